"""Command-line plumbing every command shares: options declared once, errors handled once.

Every command is a :func:`command` (a click command with the project's help layout and
error handling) and takes its common options from the decorators here, so ``--jobs``,
``--backend/--scheduler``, ``--scheme``, ``--target``, ``--detector/--upsample`` and ``--quiet``
mean the same everywhere. The ``facial-expressions`` group (:mod:`facial_expressions.cli`) gathers
the commands; each also runs alone as ``python -m <module>``.

Errors: a :class:`common.errors.FacialExpressionError` (a user's mistake or bad input), an
OSError such as an unwritable output, or a usage error prints one line ``error: ...`` on
stderr and exits 1 (usage errors: 2); Ctrl-C exits 130, SIGTERM 143 (both stop the command's
worker processes and keep what was complete); a closed or full stdout exits 1 without a
traceback.
"""

import contextlib
import errno
import os
import signal
import sys
import threading

import click

from .errors import FacialExpressionError
from .labels import SCHEMES, TARGETS
from .parallel import BACKENDS, SCHEDULER_ENV, default_backend

EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 1, 2, 130, 143


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread: unwinds as Ctrl-C does (joblib and the pools stop
    their workers, checkpoints and atomic writes keep what was complete)."""


def _raise_terminated(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def _terminate_as_interrupt():
    """While a command runs, SIGTERM (``kill``, a job scheduler, a container stopping) ends it like
    Ctrl-C. By default SIGTERM kills the main process at once and leaves its worker processes
    (loky's, Dask's) orphaned, computing their current task for minutes. Commands that handle
    SIGTERM themselves (``serve``) install their own handler inside; a caller's own handler (or
    a command run from another thread) is left alone, and the default comes back afterwards."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def one_line(exc):
    """The first line of an exception's message (or its type when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def printable(text):
    """``text`` with control characters escaped (a file name holding a newline stays on one line)."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def fail(message, code=EXIT_ERROR):
    """Print ``error: message`` on stderr and exit with ``code``."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _stdout_gone():
    """Stdout was closed or is full: point it at /dev/null so exiting flushes nothing more."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


class OneLineErrors:
    """Mixin for click commands and groups: errors end in one line and an exit code, never a traceback."""

    def main(self, *args, standalone_mode=True, **kwargs):
        with _terminate_as_interrupt():
            return self._main_one_line(*args, **kwargs)

    def _main_one_line(self, *args, **kwargs):
        try:
            return super().main(*args, standalone_mode=False, **kwargs)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            ctx = exc.ctx
            if ctx is not None:
                click.echo(ctx.get_usage(), err=True)
            fail(exc.format_message(), EXIT_USAGE)
        except click.ClickException as exc:
            fail(exc.format_message(), exc.exit_code)
        except (click.Abort, KeyboardInterrupt) as exc:   # click turns Ctrl-C into Abort
            if isinstance(exc, Terminated) or isinstance(exc.__cause__, Terminated):
                click.echo("terminated", err=True)
                sys.exit(EXIT_TERMINATED)
            click.echo("interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except FacialExpressionError as exc:
            fail(one_line(exc))
        except ModuleNotFoundError as exc:  # a smaller install (README: "Prediction only") lacks it
            fail(f"this needs the Python package {exc.name!r}, which this install lacks: "
                 f"`make install` installs everything (the prediction-only install has no --explain, "
                 f"--age-gender or --recommend)")
        except OSError as exc:
            if exc.errno in (errno.EPIPE, errno.ENOSPC) and exc.filename is None:  # stdout closed or full
                _stdout_gone()
                fail(f"cannot write to standard output: {os.strerror(exc.errno)}")
            name = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
            fail(f"{name}{exc.strerror or one_line(exc)}")


class Command(OneLineErrors, click.Command):
    """A click command with the project's error handling."""


def command(name=None, **kwargs):
    """``@command()``: a click command with the project's help layout and error handling."""
    kwargs.setdefault("context_settings", CONTEXT_SETTINGS)
    return click.command(name, cls=Command, **kwargs)


def _not_zero(ctx, param, value):
    if value == 0:
        raise click.BadParameter("0 workers cannot run anything: give a number of processes, or -1 for every core")
    return value


def jobs_option(default=-1, help="Worker processes (-1: every core)."):
    return click.option("-j", "--jobs", type=click.IntRange(min=-1), default=default, show_default=True,
                        callback=_not_zero, help=help)


def quiet_option(fn):
    return click.option("-q", "--quiet", is_flag=True, help="No progress bar or progress lines.")(fn)


def backend_options(default=default_backend, help="Run on this machine's cores or on a Dask cluster."):
    """``--backend local|dask`` and ``--scheduler ADDRESS`` (see :mod:`common.parallel`)."""
    def decorate(fn):
        fn = click.option("--scheduler", envvar=SCHEDULER_ENV, default=None,
                          help=f"Dask scheduler address (tcp://host:8786) for --backend dask "
                               f"[env: {SCHEDULER_ENV}].")(fn)
        shown = f"local, or dask when {SCHEDULER_ENV} is set" if callable(default) else True
        return click.option("--backend", type=click.Choice(BACKENDS), default=default, show_default=shown,
                            help=help)(fn)
    return decorate


#: ``--scheme each``: every label scheme the benchmark reports side by side.
EACH_SCHEME = ("basic7", "basic6", "valence3")
_SCHEME_WORDS = ("all keeps the table's labels; basic7 the 7 basic emotions incl. neutral; basic6 without neutral; "
                 "valence3 negative (angry, disgust, fear, sad), neutral, positive (happy, surprise)")


def parse_schemes(text):
    """"basic6,valence3" / "each" / "all" -> tuple of scheme names (in the order given)."""
    names = [n.strip() for n in str(text).split(",") if n.strip()]
    names = [s for n in names for s in (EACH_SCHEME if n == "each" else (n,))]
    unknown = [n for n in names if n != "all" and n not in SCHEMES]
    if unknown or not names:
        raise click.BadParameter(f"unknown label scheme(s) {unknown}; choose from all, each, {', '.join(SCHEMES)}")
    return tuple(dict.fromkeys(names))


def scheme_option(help=None, several=False):
    """``--scheme``: one label scheme, or with ``several=True`` a comma-separated list (or ``each``)."""
    if several:
        return click.option("--scheme", default="all", show_default=True,
                            callback=lambda ctx, param, value: parse_schemes(value),
                            help=help or f"Label scheme(s), comma-separated: {_SCHEME_WORDS}; or each (= "
                                         f"{','.join(EACH_SCHEME)}). With several schemes each gets its own "
                                         "sub-folder of OUTPUT and OUTPUT/schemes.md compares them.")
    return click.option("--scheme", type=click.Choice(("all",) + tuple(SCHEMES)), default="all", show_default=True,
                        help=help or f"Map labels through this label scheme first: {_SCHEME_WORDS}.")


def target_option(fn):
    """``--target label|gender|age``: what to learn from a feature table (common.labels.TARGETS)."""
    return click.option("--target", type=click.Choice(TARGETS), default="label", show_default=True,
                        help="What to learn: label, the table's class labels (emotions); gender, the apparent "
                             "gender of a UTKFace table (female/male); age, its age in years (a regression).")(fn)


def detector_options(detectors, default=None):
    """``--detector`` (one of ``detectors``, landmarks.detect.DETECTORS) and ``--upsample``;
    ``default=None`` means "the model's own"."""
    def decorate(fn):
        whose = "" if default is not None else " Default: the model's own."
        fn = click.option("--upsample", type=click.IntRange(0, 3), default=0 if default is not None else None,
                          show_default=default is not None,
                          help="Times the detector enlarges the image to find small faces (each step ~4x "
                               f"slower).{whose}")(fn)
        return click.option("--detector", type=click.Choice(detectors), default=default,
                            show_default=default is not None,
                            help="hog: dlib's HOG detector (photos); cnn: dlib's MMOD CNN (slower, more poses); "
                                 "whole: the image is the face (tight crops); auto: hog, upsampling small images "
                                 "until a face is found; the whole image when that face fills it, or when "
                                 f"nothing is found in a small square crop.{whose}")(fn)
    return decorate


def ferplus_options(fn):
    """``--ferplus CSV`` (FER+ majority labels for FER-2013 rows) and ``--ferplus-weights``."""
    fn = click.option("--ferplus-weights", is_flag=True,
                      help="With --ferplus: weigh each FER-2013 face by its majority's share of the annotators' "
                           "emotion votes (0.3-1, median 0.8; other rows weigh 1).")(fn)
    return click.option("--ferplus", type=click.Path(exists=True, dir_okay=False), default=None,
                        help="A ferplus.csv: FER-2013 rows take their FER+ majority label (10 annotators) and "
                             "FER+ split; rows whose winner is unknown, not-a-face or a tie are dropped. "
                             "FER+ adds contempt: use --scheme basic7 for 7 classes.")(fn)


def recommend_options(help):
    """``--recommend CATALOGUE`` (``help`` says what it recommends for), ``--mode match|lift`` and
    ``--tracks N`` (see :mod:`classifiers.recommend`)."""
    def decorate(fn):
        fn = click.option("--tracks", "n_tracks", type=click.IntRange(1, 100), default=10, show_default=True,
                          help="With --recommend: how many tracks.")(fn)
        fn = click.option("--mode", type=click.Choice(["match", "lift"]), default="match", show_default=True,
                          help="With --recommend: match mirrors the mood; lift starts there and moves gradually "
                               "to pleasant.")(fn)
        return click.option("--recommend", "catalogue_path", type=click.Path(dir_okay=False), default=None,
                            help=f"Music catalogue CSV (artist, title, valence, arousal[, url]): {help}")(fn)
    return decorate


def check_recommend_options(catalogue_path):
    """A usage error (exit 2) when --mode or --tracks is given without --recommend: they would be
    ignored without a word."""
    from click.core import ParameterSource

    ctx = click.get_current_context()
    given = [flag for flag, param in (("--mode", "mode"), ("--tracks", "n_tracks"))
             if ctx.get_parameter_source(param) == ParameterSource.COMMANDLINE]
    if given and catalogue_path is None:
        raise click.UsageError(f"{' and '.join(given)} {'applies' if len(given) == 1 else 'apply'} only with "
                               "--recommend CATALOGUE")


def mirror_option(fn):
    """``--mirror/--no-mirror``: read each face with its mirror image (symmetric landmarks, the mean
    of the two views' features: ``recognise(..., mirror=True)``, the default)."""
    return click.option("--mirror/--no-mirror", default=True, show_default=True,
                        help="Read each face with its mirror image: landmarks from both views, the expression "
                             "from the mean of the two views' features: steadier labels (a photo and its mirror "
                             "nearly always agree), up to a third slower. --no-mirror reads the face as it is, one "
                             "view, as the benchmark command measures models.")(fn)


def age_gender_option(adds):
    """``--age-gender``: also the shipped apparent-age and apparent-gender models' estimates per
    face (``recognise(..., age_gender=True)``); ``adds`` says where they appear."""
    return click.option("--age-gender", "age_gender", is_flag=True,
                        help="Also estimate each face's apparent age, with a plausible range, and its apparent "
                             "gender, with its probability (the shipped UTKFace models: age and binary gender as "
                             "labelled in UTKFace; an estimate from appearance, not identity; research use "
                             f"only). {adds}")


def utf8_safe_output():
    """File names that are not valid UTF-8 print as they are instead of failing."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="surrogateescape")
