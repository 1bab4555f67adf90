"""Cross-dataset accuracy: train on two shared datasets, test on the third (shared classes only).

The classes all three datasets have are the six basic emotions (CK+48 has no neutral,
JAFFE and FER-2013 no contempt). For each held-out dataset the model is grid-searched
(subject/image-grouped CV) and fitted on the other two tables, then tested on every face
of the held-out one (FER-2013: its test part, PublicTest+PrivateTest).

The action units are re-measured in each direction against a neutral shape learned from the
training datasets' neutral faces only (FER-2013: its Training part), so no face of the tested
dataset shapes the features either (the shipped reference is learned from FER-2013 Training).

With ``--mirror`` each tested face is also read as ``predict`` reads it: the mean of its row and
its mirror image's (the mirrored rows are described from the images, their action units measured
against the same reference), and both figures are reported.

    python benchmarks/cross_dataset.py data/ckplus48.npz data/jaffe.npz data/fer2013.npz \
        [--model logreg] [--quick] [--ferplus ../shared/datasets/fer2013/ferplus.csv] [--mirror] -o reports/cross_dataset
"""

import json
import os
import sys

import click
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SHARED = ("angry", "disgust", "fear", "happy", "sad", "surprise")


def direction_data(tables, held_out, ferplus=None):
    """(training data, test data, neutral faces of the reference) for one direction.

    ``tables``: {path: FeatureTable} of the three datasets. The training part is the other two
    tables (never FER-2013's test part); the test part is every original face of ``held_out``
    (FER-2013: PublicTest+PrivateTest). Action units are re-measured against the mean neutral
    face of the training tables, so the tested dataset shapes no feature. ``ferplus`` (a
    ferplus.csv): FER-2013 training faces take their FER+ majority label (faces without one are
    left out); a tested dataset keeps its own labels.
    """
    from classifiers.data import load_training_data
    from features.action_units import learn_reference, with_reference

    train_tables = [tables[t] for t in tables if t != held_out]
    test_table, n_neutral = tables[held_out], 0
    if all("action_units" in t.groups for t in tables.values()):
        reference, n_neutral = learn_reference(train_tables)
        train_tables = [with_reference(t, reference) for t in train_tables]
        test_table = with_reference(test_table, reference)
    train = load_training_data(train_tables, labels=SHARED, ferplus=ferplus)
    train = train.select(~np.isin(train.splits, ("PublicTest", "PrivateTest")))  # never FER's test part
    test = load_training_data(test_table, labels=SHARED)
    test = test.select(~test.augmented & ~(test.splits == "Training"))
    return train, test, n_neutral


def _mirror_rows(sources, config):
    """(row, row of its mirror image) of the largest face of each image as ``recognise`` reads it
    (landmarks from both views, :func:`landmarks.shape.predict_landmarks`), or Nones."""
    from features.describe import describe_face
    from landmarks.io import read_image
    from landmarks.shape import find_faces, mirrored

    out = []
    for source in sources:
        faces = find_faces(read_image(source), config.detector, config.upsample, config.upscale_to, config.align_size,
                           symmetric=True)
        out.append((describe_face(faces[0], config), describe_face(mirrored(faces[0]), config)) if faces else (None, None))
    return out


def mirrored_table(table, rows, jobs=2):
    """(the table with ``rows`` described afresh from their images as ``recognise`` reads them
    (symmetric landmarks), the same with the rows of their faces' mirror images, how many
    re-described rows differ from the table's). Averaging the two is what ``recognise`` reads, even
    where today's detector boxes a face otherwise than the table's extraction did; a face no longer
    found keeps the table's row in both."""
    import dataclasses

    from joblib import Parallel, delayed

    from features.describe import FeatureConfig

    config = FeatureConfig.from_dict(table.config)
    chunks = np.array_split(np.asarray(rows), max(1, jobs * 8))
    done = Parallel(n_jobs=jobs)(delayed(_mirror_rows)([str(table.sources[i]) for i in chunk], config)
                                 for chunk in chunks)
    X, X_mirror, differ = table.X.copy(), table.X.copy(), 0
    for i, (plain, mirror) in zip(np.concatenate(chunks), (r for chunk in done for r in chunk)):
        if mirror is not None:
            differ += not np.array_equal(plain, table.X[i])
            X[i], X_mirror[i] = plain, mirror
    return dataclasses.replace(table, X=X), dataclasses.replace(table, X=X_mirror), differ


@click.command()
@click.argument("tables", nargs=3, type=click.Path(exists=True, dir_okay=False))
@click.option("--model", default="logreg", show_default=True)
@click.option("--quick", is_flag=True)
@click.option("-j", "--jobs", default=2, show_default=True)
@click.option("--ferplus", default=None, type=click.Path(exists=True, dir_okay=False),
              help="train on FER-2013's FER+ majority labels (a tested FER-2013 keeps its own)")
@click.option("--mirror", is_flag=True, help="also report each tested face read with its mirror image (as predict does)")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False))
def main(tables, model, quick, jobs, ferplus, mirror, output):
    from classifiers.results import Scores
    from classifiers.train import train_model
    from features.table import load_table
    from common.files import atomic_path

    loaded = {path: load_table(path) for path in tables}
    results = []
    for held_out in tables:
        train, test, n_neutral = direction_data(loaded, held_out, ferplus)
        pipeline, summary = train_model(train, model, quick=quick, seed=0, jobs=jobs, progress=False)
        predicted = pipeline.predict(test.X)
        entry = {"test": test.datasets[0], "trained_on": sorted(set(train.datasets.tolist())),
                 "n_train": int(len(train.y)), "n_test": int(len(test.y)), "model": model,
                 "best_params": summary.get("best_params"), "reference_neutral_faces": int(n_neutral),
                 "training_labels": "FER+ majority for FER-2013" if ferplus else "datasets' own"}
        entry.update(Scores.compute(test.y, predicted, list(SHARED)).to_dict())
        line = (f"train {'+'.join(entry['trained_on'])} -> test {entry['test']}: accuracy {entry['accuracy']:.3f}, "
                f"balanced {entry['balanced_accuracy']:.3f}, macro-F1 {entry['macro_f1']:.3f} ({entry['n_test']} faces)")
        if mirror:
            table = loaded[held_out]
            tested = np.flatnonzero(table.ok & ~table.augmented & (table.splits != "Training"))
            again, flipped, differ = mirrored_table(table, tested, jobs)
            _, test_again, _ = direction_data({**loaded, held_out: again}, held_out, ferplus)
            _, test_mirror, _ = direction_data({**loaded, held_out: flipped}, held_out, ferplus)
            assert np.array_equal(test_mirror.sources, test.sources) and np.array_equal(test_again.sources, test.sources)
            averaged = pipeline.predict((test_again.X + test_mirror.X) / np.float32(2))
            entry["mirror_averaged"] = Scores.compute(test.y, averaged, list(SHARED)).to_dict()
            entry["mirror_rows_differing_from_table"] = int(differ)
            line += (f"; mirror-averaged: accuracy {entry['mirror_averaged']['accuracy']:.3f}, macro-F1 "
                     f"{entry['mirror_averaged']['macro_f1']:.3f} (re-described rows unlike the table's: {differ})")
        results.append(entry)
        click.echo(line)
    os.makedirs(output, exist_ok=True)
    with atomic_path(os.path.join(output, "results.json")) as tmp, open(tmp, "w") as fh:
        json.dump({"classes": SHARED, "quick": quick, "ferplus": bool(ferplus), "mirror": mirror, "results": results},
                  fh, indent=2)


if __name__ == "__main__":
    main()
