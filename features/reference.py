"""Rebuild the neutral reference shape the action units are measured against.

``python -m features.reference data/fer2013.npz`` writes ``features/neutral_reference.json``: the
mean normalised landmarks of the tables' original, successfully described neutral faces, from
their Training part when they have splits (:func:`features.action_units.learn_reference`).

Give only tables that no benchmark tests. FER-2013's Training part is never a test set, whereas
every JAFFE or CK+48 face is a test subject in some fold of their subject-independent benchmarks.
(A module of its own rather than ``python -m features.action_units``: the ``features`` package
imports ``action_units``, so running that module as a script would load it twice.)
"""

import json
import os

import click
import numpy as np

from common.cli import command
from common.files import atomic_path

from .action_units import REFERENCE_FILE, learn_reference
from .table import load_table


@command("reference")
@click.argument("tables", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=REFERENCE_FILE,
              show_default="features/neutral_reference.json",
              help="Where to write the reference (JSON), replaced only once it is complete.")
def main(tables, output):
    """Learn the neutral reference shape from the neutral faces of feature TABLES.

    Only original (not mirrored) neutral faces of the Training part are averaged. Give only
    tables that no benchmark tests, e.g. data/fer2013.npz.
    """
    try:
        points, n = learn_reference([load_table(t) for t in tables])
        with atomic_path(output) as tmp, open(tmp, "w") as fh:
            json.dump({"learned_from": [os.path.basename(t) for t in tables], "neutral_faces": n,
                       "points": np.round(points.astype(np.float64), 5).ravel().tolist()}, fh)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{output}: mean of {n} neutral faces")


if __name__ == "__main__":
    main()
