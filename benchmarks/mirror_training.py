"""Mirrored training faces and mirror consistency (issue 21), on an official-split table.

From a table extracted with ``--flip`` (every face and its mirrored copy), a logistic
regression (the default model's pipeline, fixed C, every default group; no search) is fitted on
the Training faces, once without and once with their mirrored copies. Both are tested on the
original test faces (PublicTest+PrivateTest, and PrivateTest alone): accuracy, and how often the
mirrored copy of a test face gets a different label than the face itself.

    python benchmarks/mirror_training.py TABLE_FLIP.npz [--ferplus ferplus.csv] [--scheme basic7] [--C 0.01]
"""

import os
import sys
import time

import click
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@click.command()
@click.argument("table", type=click.Path(exists=True, dir_okay=False))
@click.option("--ferplus", default=None, type=click.Path(exists=True, dir_okay=False))
@click.option("--scheme", default=None)
@click.option("--C", "c", default=0.01, show_default=True)
@click.option("--seed", default=0, show_default=True)
def main(table, ferplus, scheme, c, seed):
    from classifiers.data import load_training_data
    from classifiers.models import make_pipeline
    from classifiers.search import single_blas_thread

    data = load_training_data(table, scheme=scheme, ferplus=ferplus)
    train = data.splits == "Training"
    test = np.isin(data.splits, ["PublicTest", "PrivateTest"]) & ~data.augmented
    mirror_of = {data.original_source(i): i for i in np.flatnonzero(data.augmented)}
    pairs = [(i, mirror_of[str(data.sources[i])]) for i in np.flatnonzero(test) if str(data.sources[i]) in mirror_of]
    originals, mirrors = (np.array(p) for p in zip(*pairs))
    private = data.splits[originals] == "PrivateTest"
    print(f"{os.path.basename(table)}: labels {'FER+ majority' if ferplus else 'dataset'}, scheme {scheme or 'all'}; "
          f"{int((train & ~data.augmented).sum())} Training faces (+{int((train & data.augmented).sum())} mirrored); "
          f"{len(originals)} test faces with their mirrored copies ({int(private.sum())} PrivateTest)")
    print("\n| training faces | test accuracy | PrivateTest | macro-F1 | mirrored test face gets another label | fit |")
    print("|---|---|---|---|---|---|")
    from sklearn.metrics import f1_score

    for name, rows in (("originals", train & ~data.augmented), ("originals + mirrored", train)):
        started = time.time()
        with single_blas_thread():
            model = make_pipeline("logreg", data.groups, seed).set_params(model__C=c)
            model.fit(data.X[rows], data.y[rows], **data.fit_params(rows))
            label, mirrored = model.predict(data.X[originals]), model.predict(data.X[mirrors])
        truth = data.y[originals]
        print(f"| {name} | {np.mean(label == truth):.3f} | {np.mean(label[private] == truth[private]):.3f} | "
              f"{f1_score(truth, label, average='macro'):.3f} | {np.mean(label != mirrored):.1%} | "
              f"{time.time() - started:.0f} s |")


if __name__ == "__main__":
    main()
