"""A seeded FER-2013 subset as a folder of symbolic links, for FER+ figures on a busy machine.

Links (never copies) a seeded sample of FER-2013 Training, PublicTest and PrivateTest images
into ``OUT/train/<class>/`` and ``OUT/test/<class>/`` (the FER-2013 folder layout, file names
kept, so ``--ferplus`` finds their FER+ rows). Only images FER+ has a row for are drawn.

    python benchmarks/ferplus_subset.py /tmp/fersub --training 4000 --public 800 --private 1500 --seed 0
    python -m features.extract /tmp/fersub -o /tmp/fersub.npz --preset fer2013
    python -m classifiers.benchmark /tmp/fersub.npz -o reports/ferplus_subset --models logreg --quick \
        --ferplus ../shared/datasets/fer2013/ferplus.csv --scheme basic7
"""

import os
import random
import sys

import click

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATASETS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "datasets")


@click.command()
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--training", default=4000, show_default=True)
@click.option("--public", default=800, show_default=True)
@click.option("--private", default=1500, show_default=True)
@click.option("--seed", default=0, show_default=True)
def main(out, training, public, private, seed):
    from landmarks.datasets import ferplus_key, load_fer2013_folders, load_ferplus_votes

    root = os.path.abspath(os.path.join(DATASETS, "fer2013"))
    votes = load_ferplus_votes(os.path.join(root, "ferplus.csv"))
    samples = [s for s in load_fer2013_folders(root) if ferplus_key(s.path) in votes]
    rng = random.Random(seed)
    for split, count in (("Training", training), ("PublicTest", public), ("PrivateTest", private)):
        chosen = rng.sample([s for s in samples if s.split == split], count)
        for sample in chosen:
            link = os.path.join(out, *ferplus_key(sample.path).split("/"))
            os.makedirs(os.path.dirname(link), exist_ok=True)
            if not os.path.lexists(link):
                os.symlink(os.path.abspath(sample.path), link)
        click.echo(f"{split}: {count} images linked")


if __name__ == "__main__":
    main()
