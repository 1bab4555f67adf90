"""Mirror averaging at prediction time (issue 21): accuracy, and agreement with the mirrored photo.

Every tested face is described twice: as usual (one view, dlib's own landmarks), and as
``recognise`` reads it (its landmarks the symmetric mean of dlib's on the image and on its mirror
image, its row the mean of its row and its mirror image's: ``features.describe.mirror_averaged``,
the aligned crop flipped). The mirrored photo is described both ways too (detected and
landmarked afresh). A
logistic regression with the default model's pipeline (fixed C, every default group, no search)
is fitted on each training part of the table's protocol (subject-independent folds; FER-2013's
official split) and predicts the four descriptions of its test faces:

* accuracy and macro-F1 with and without mirror averaging;
* how often the mirrored photo gets another label than the photo, with and without.

    python benchmarks/mirror_averaging.py TABLE [--C 0.01] [--ferplus ferplus.csv] [--scheme basic7] [--target gender] [--limit N] [--jobs 2]
"""

import os
import sys
import time

import click
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _describe(path, config):
    """(plain row, averaged row, mirrored photo's plain row, its averaged row) of the largest face of
    the image at ``path`` and of its mirrored photo; None where no face is found."""
    from features.describe import describe_face, mirror_averaged
    from landmarks.io import read_image
    from landmarks.shape import find_faces

    image = read_image(path)
    rows = []
    for pixels in (image, np.ascontiguousarray(image[:, ::-1])):
        for symmetric in (False, True):   # one view on dlib's points; as recognise reads a face
            faces = find_faces(pixels, config.detector, config.upsample, config.upscale_to, config.align_size,
                               symmetric=symmetric)
            if not faces:
                rows.append(None)
                continue
            row = describe_face(faces[0], config)
            rows.append(mirror_averaged(faces[:1], row[None], config)[0] if symmetric else row)
    return rows


def _describe_all(paths, config):
    return [_describe(p, config) for p in paths]


@click.command()
@click.argument("table", type=click.Path(exists=True, dir_okay=False))
@click.option("--C", "c", default=0.01, show_default=True, help="the logistic regression's C (the shipped model's)")
@click.option("--ferplus", default=None, type=click.Path(exists=True, dir_okay=False),
              help="FER+ majority labels for FER-2013 rows")
@click.option("--scheme", default=None, help="label scheme (e.g. basic7)")
@click.option("--target", default="label", show_default=True, help="label, or gender for a UTKFace table")
@click.option("--limit", default=0, help="test at most this many faces per fold (seeded; 0: all)")
@click.option("--jobs", default=2, show_default=True)
@click.option("--seed", default=0, show_default=True)
def main(table, c, ferplus, scheme, target, limit, jobs, seed):
    from joblib import Parallel, delayed
    from sklearn.metrics import f1_score

    from classifiers.data import load_training_data
    from classifiers.models import make_pipeline
    from classifiers.protocol import choose_protocol
    from classifiers.search import single_blas_thread
    from features.describe import FeatureConfig

    started = time.time()
    data = load_training_data(table, ferplus=ferplus, scheme=scheme, target=target)
    config = FeatureConfig.from_dict(data.config)
    protocol = choose_protocol(data, check_duplicates=False)
    rng = np.random.default_rng(seed)
    folds = []
    for train, test in protocol.folds:
        test = test[~data.augmented[test]]
        if limit and len(test) > limit:
            test = np.sort(rng.choice(test, limit, replace=False))
        folds.append((train, test))
    tested = np.concatenate([t for _, t in folds])
    paths = [str(data.sources[i]) for i in tested]
    chunks = np.array_split(np.arange(len(paths)), max(1, jobs * 8))
    described = Parallel(n_jobs=jobs)(delayed(_describe_all)([paths[i] for i in ch], config) for ch in chunks)
    rows = dict(zip(tested.tolist(), (r for chunk in described for r in chunk)))
    print(f"{os.path.basename(table)}: {protocol.description}; {len(tested)} test faces described "
          f"({time.time() - started:.0f} s)")
    drift = max(float(np.abs(rows[i][0] - data.X[i]).max()) for i in tested if rows[i][0] is not None)
    print(f"largest difference between a re-described row and the table's: {drift:.2g}")

    truth, plain, averaged, flip_plain, flip_averaged = [], [], [], [], []
    for train, test in folds:
        with single_blas_thread():
            model = make_pipeline("logreg", data.groups, seed).set_params(model__C=c)
            model.fit(data.X[train], data.y[train], **data.fit_params(train))
        kept = [i for i in test if rows[i][0] is not None]
        for out, k in ((plain, 0), (averaged, 1)):
            out.extend(model.predict(np.vstack([rows[i][k] for i in kept])))
        for out, k in ((flip_plain, 2), (flip_averaged, 3)):
            found = [i for i in kept if rows[i][k] is not None]
            labels = dict(zip(found, model.predict(np.vstack([rows[i][k] for i in found])))) if found else {}
            out.extend(labels.get(i) for i in kept)   # None: no face in the mirrored photo
        truth.extend(data.y[kept])
    truth, plain, averaged = np.array(truth), np.array(plain), np.array(averaged)
    print(f"\n| prediction | accuracy | macro-F1 | mirrored photo gets another label |")
    print("|---|---|---|---|")
    for name, label, flipped in (("one view", plain, flip_plain), ("as recognise reads it (symmetric landmarks, mirror-averaged)", averaged, flip_averaged)):
        changed = np.mean([f is None or f != l for f, l in zip(flipped, label)])
        print(f"| {name} | {np.mean(label == truth):.3f} | {f1_score(truth, label, average='macro'):.3f} | "
              f"{changed:.1%} |")
    print(f"\n{len(truth)} faces; {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
