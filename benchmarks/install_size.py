"""Install time and size of each install variant, each in a fresh virtual environment.

    python benchmarks/install_size.py [--variants core,explain,parquet,cluster,predict-only,make]
                                      [--keep DIR] [--cache]

core: ``pip install .``; explain / parquet / cluster: ``pip install ".[extra]"``; predict-only:
the README's prediction-only commands; make: ``make install`` in a fresh clone of this checkout
(editable ``.[all,test]``, installed by uv where it can be had); make-pip: the same with
``INSTALLER=pip``. Sizes are ``du`` of the environment (the project's own files
included for non-editable installs); times are wall-clock seconds of the install commands.
pip's and uv's caches are off unless ``--cache``, as on a fresh machine (downloads come from the package
registry each time, so network speed is part of the time).
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
PREDICT_ONLY = ["dlib-bin", "face_recognition_models", "opencv-python-headless<5", "numpy", "pillow", "click",
                "threadpoolctl"]
VARIANTS = ("core", "explain", "parquet", "cluster", "predict-only", "make", "make-pip")


def _size(path):
    out = subprocess.run(["du", "-s", "-B1", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


def _run(cmd, cwd, env):
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def install(variant, work, env):
    """Install ``variant`` under ``work``; returns (seconds, bytes of the environment)."""
    venv = work / "venv"
    python = venv / "bin" / "python"
    start = time.perf_counter()
    if variant in ("make", "make-pip"):
        clone = work / "clone"
        _run(["git", "clone", "--quiet", str(ROOT), str(clone)], work, env)
        start = time.perf_counter()
        installer = ["INSTALLER=pip"] if variant == "make-pip" else []
        _run(["make", "install", "PYTHON=" + sys.executable, *installer], clone, env)
        return time.perf_counter() - start, _size(clone / ".venv")
    _run([sys.executable, "-m", "venv", str(venv)], work, env)
    if variant == "predict-only":
        _run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", str(ROOT)], work, env)
        _run([str(python), "-m", "pip", "install", "--quiet", *PREDICT_ONLY], work, env)
    else:
        target = str(ROOT) if variant == "core" else f"{ROOT}[{variant}]"
        _run([str(python), "-m", "pip", "install", "--quiet", target], work, env)
    return time.perf_counter() - start, _size(venv)


@click.command()
@click.option("--variants", default=",".join(VARIANTS), show_default=True, help="Comma-separated install variants.")
@click.option("--keep", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Build the environments under this folder and keep them (default: a temporary folder, removed).")
@click.option("--cache/--no-cache", default=False, show_default=True, help="Let pip and uv use their download caches.")
def main(variants, keep, cache):
    """Time and size of each install variant in a fresh virtual environment."""
    env = dict(os.environ)
    if not cache:
        env["PIP_NO_CACHE_DIR"] = "1"
        env["UV_NO_CACHE"] = "1"
    chosen = [v.strip() for v in variants.split(",") if v.strip()]
    unknown = sorted(set(chosen) - set(VARIANTS))
    if unknown:
        raise click.UsageError(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    base = Path(tempfile.mkdtemp(prefix="install-size-")) if keep is None else keep
    base.mkdir(parents=True, exist_ok=True)
    click.echo(f"{'variant':<14} {'seconds':>8} {'size':>9}")
    try:
        for variant in chosen:
            work = base / variant
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir()
            seconds, size = install(variant, work, env)
            click.echo(f"{variant:<14} {seconds:8.1f} {size / 2**30:7.2f} GB")
    finally:
        if keep is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
