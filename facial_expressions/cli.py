"""The ``facial-expressions`` command: one click group, every verb a subcommand.

Each subcommand is defined next to the code it runs (``classifiers.predict``,
``features.extract``, ...) and also runs alone as ``python -m <module>``; this group
imports a subcommand only when it is called, so ``facial-expressions predict`` does not
pay for importing the training code.
"""

import importlib

import click

from common.cli import CONTEXT_SETTINGS, OneLineErrors

#: subcommand -> (module, one-line help shown by ``facial-expressions --help``)
COMMANDS = {
    "predict": ("classifiers.predict", "The emotion of every face in images or folders (text, JSON, CSV, pictures)."),
    "extract": ("features.extract", "Landmarks and features of a whole dataset -> one feature table."),
    "benchmark": ("classifiers.benchmark", "Compare the classical models on a feature table, same folds for all."),
    "train": ("classifiers.train", "Fit one model on feature tables -> one model file."),
    "evaluate": ("classifiers.evaluate", "Score a model file on a labelled class-per-folder dataset."),
    "reference": ("features.reference", "Rebuild the neutral face the action units are measured against."),
    "video": ("facial_expressions.video", "Per-face emotion timeline of a video file, folder, camera or stream."),
}


class LazyGroup(OneLineErrors, click.Group):
    """A group whose subcommands are imported on first use (click's documented lazy-loading pattern)."""

    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        return importlib.import_module(COMMANDS[name][0]).main

    def format_commands(self, ctx, formatter):
        with formatter.section("Commands"):
            formatter.write_dl([(name, text) for name, (_, text) in COMMANDS.items()])


@click.group("facial-expressions", cls=LazyGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(package_name="facial-expressions")
def main():
    """Facial-expression recognition with classical machine learning on dlib's 68 landmarks.

    \b
    Quick start:
      facial-expressions predict photo.jpg                 which emotion, per face
      facial-expressions predict photo.jpg --explain       ... and why
      facial-expressions predict photos/ --json > out.jsonl
    \b
    Your own model:
      facial-expressions extract DATASET -o data/mine.npz
      facial-expressions benchmark data/mine.npz -o reports/mine
      facial-expressions train data/mine.npz -o mine.skops

    Run any command with --help for its options.
    """
