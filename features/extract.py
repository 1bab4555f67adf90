"""Extract landmarks and features of a whole dataset into one feature table.

    python -m features.extract DATASET -o FILE [--preset P] [--detector D] [--jobs N]

One pass over all images, in parallel (worker processes forked once the models are loaded),
with a progress bar. Finished chunks are checkpointed in FILE.partial/, so an interrupted
run resumes where it stopped and gives the same table as an uninterrupted one; the table
is written atomically at the end.
"""

import collections
import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import sys
import time
import zipfile

import click
import numpy as np

from common.cli import EXIT_INTERRUPTED, backend_options, command, detector_options, jobs_option, quiet_option
from common.errors import DatasetError, DegenerateLandmarksError, ImageError, ImageTooSmallError, OutputLockedError
from common.files import atomic_path
from common.files import output_lock as _output_lock
from common.parallel import compute_backend, fork_pool
from landmarks.datasets import PRESETS, TARGET_NAMES, guess_preset, load_dataset
from landmarks.detect import DETECTORS
from landmarks.io import MIN_SIDE, read_image
from landmarks.shape import mirror_face

from .describe import AGE_GENDER_GROUPS, DEFAULT_GROUPS, GROUPS, FeatureConfig, describe_face, describe_image
from .pixelize import pixelize, save_rgb
from .table import FeatureTable

CHUNK_SIZE = 64


class ExtractionLockedError(OutputLockedError):
    """Another extraction is writing the same output."""


def image_of(sample):
    """The gray pixels of a dataset sample (file or in-memory)."""
    if sample.pixels is not None:
        # in-memory pixels (fer2013.csv rows) get the same size floor as image files
        if min(sample.pixels.shape[:2]) < MIN_SIDE:
            h, w = sample.pixels.shape[:2]
            raise ImageTooSmallError(sample.source, f"{w}x{h}")
        return sample.pixels
    return read_image(sample.path, "gray")


def extract_image(image, config):
    """(status, n_faces, vector or None, faces) for one image array under ``config``: the
    largest face is described (the image's label is its label)."""
    faces, X, found = describe_image(image, config, max_faces=1)
    if not found:
        return "no_face", 0, None, faces
    if not len(X):
        return "degenerate_landmarks", found, None, faces
    return "ok", found, X[0], faces


def _mirrored_vector(image, face, config):
    """Feature vector of the mirrored face (flip augmentation), or None if degenerate."""
    try:
        _, mirrored = mirror_face(image, face, config.align_size)
        vector = describe_face(mirrored, config)
    except DegenerateLandmarksError:
        return None
    return vector if np.all(np.isfinite(vector)) else None


def _extract_chunk(index, samples, config, n_columns, pixelize_dir=None, first_row=0, flip=False):
    X = np.zeros((len(samples), n_columns), dtype=np.float32)
    X_flip = np.zeros((len(samples), n_columns), dtype=np.float32) if flip else None
    flip_ok = np.zeros(len(samples), dtype=bool)
    status, n_faces = [], []
    for i, sample in enumerate(samples):
        try:
            image = image_of(sample)
            state, count, vector, faces = extract_image(image, config)
        except ImageError as exc:
            state, count, vector, faces = exc.reason, 0, None, []
        if vector is not None:
            X[i] = vector
            if flip:
                mirrored = _mirrored_vector(image, faces[0], config)
                if mirrored is not None:
                    X_flip[i], flip_ok[i] = mirrored, True
        status.append(state)
        n_faces.append(count)
        if pixelize_dir and faces:
            name = f"{first_row + i:06d}_{os.path.splitext(os.path.basename(sample.source))[0]}.png"
            save_rgb(os.path.join(pixelize_dir, name), pixelize(image, faces[:1], [sample.label]))
    chunk = {"X": X, "status": np.array(status, dtype=str), "n_faces": np.array(n_faces, dtype=np.int32)}
    if flip:
        chunk.update(X_flip=X_flip, flip_ok=flip_ok)
    return index, chunk


def _extract_chunk_of(args):
    return _extract_chunk(*args)


@contextlib.contextmanager
def _chunk_results(tasks, n_jobs, backend, config):
    """The (index, chunk) results of ``_extract_chunk(*task)`` for every task, in any order.

    Local workers are forked from this process after it loaded dlib's models: they start at once,
    with no imports and no model loading of their own (0.5-1 s of each worker's start), and share
    the models' memory. A process with other threads running (a Dask client, a notebook, a test
    runner) cannot fork safely (a worker could inherit a lock held by another thread): its local
    workers are joblib's fresh processes, as are Dask's.
    """
    import threading

    if n_jobs == 1:
        yield (_extract_chunk(*task) for task in tasks)
    elif backend == "local" and threading.active_count() == 1:
        from landmarks import models

        models.load_for(config.detector)
        with fork_pool(n_jobs) as pool:
            yield pool.imap_unordered(_extract_chunk_of, tasks)
    else:
        from joblib import Parallel, delayed

        yield Parallel(n_jobs=n_jobs, return_as="generator_unordered")(delayed(_extract_chunk)(*task) for task in tasks)


def _absolute(sample):
    if sample.path is None:
        return sample
    return dataclasses.replace(sample, path=os.path.abspath(sample.path))


def _fingerprint(samples, config, chunk_size, flip=False):
    # chunk_size is part of it: checkpoints are per chunk, so another chunking cannot reuse them
    digest = hashlib.sha256(json.dumps([config.to_dict(), chunk_size, flip], sort_keys=True).encode())
    for s in samples:
        digest.update(f"{s.source}\t{s.label}\t{s.subject}\t{s.split}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


@contextlib.contextmanager
def output_lock(output):
    """Hold an exclusive lock on ``output``; a second extraction to it refuses."""
    try:
        with _output_lock(output, "extraction"):
            yield
    except OutputLockedError as exc:
        raise ExtractionLockedError(str(exc)) from None


def _chunk_path(partial, index):
    return os.path.join(partial, f"chunk_{index:06d}.npz")


def _load_chunk(path):
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def default_groups(preset):
    """The feature groups a table of a dataset with ``preset`` gets unless told otherwise: the
    expression groups, and for UTKFace (age and gender) also the whole face's skin texture."""
    return AGE_GENDER_GROUPS if preset == "utkface" else DEFAULT_GROUPS


def extract_dataset(dataset, output, preset=None, config=None, jobs=-1, chunk_size=CHUNK_SIZE,
                    pixelize_dir=None, progress=True, limit=None, backend="local", scheduler=None, flip=False):
    """Extract ``dataset`` into the feature table ``output``; returns (table, summary dict).

    ``config`` (a :class:`FeatureConfig`) defaults to the ``auto`` detector and
    :func:`default_groups` of the dataset's preset.

    ``backend="dask"`` runs the chunks on the Dask cluster at ``scheduler`` (see
    :mod:`common.parallel`); the table is the same as a local run's. ``flip=True`` appends
    a mirrored copy of every described face (rows marked ``augmented``, sources ending
    ``#flip``), for training-time augmentation; benchmarks never test on them.
    """
    output = os.fspath(output)
    preset = preset or guess_preset(dataset)
    if config is None:
        config = FeatureConfig(groups=default_groups(preset))
    samples = load_dataset(dataset, preset)
    if limit:
        samples = samples[:limit]
    real_output = os.path.realpath(output)
    # an output that does not exist yet cannot be one of the inputs: the scan (one realpath per
    # image, 0.1-0.6 s for 7,178 images) is only needed when it does
    if real_output == os.path.realpath(dataset) or (os.path.lexists(output) and any(
            s.path is not None and os.path.realpath(s.path) == real_output for s in samples)):
        raise DatasetError(f"{output}: this is an input of the dataset; choose another output file")
    names, slices = config.columns()
    partial = output + ".partial"
    started = time.time()
    with output_lock(output):
        fingerprint = _fingerprint(samples, config, chunk_size, flip)
        meta_path = os.path.join(partial, "meta.json")
        if os.path.isdir(partial):
            try:
                with open(meta_path) as fh:
                    same = json.load(fh).get("fingerprint") == fingerprint
            except (OSError, ValueError):
                same = False
            if not same:
                shutil.rmtree(partial)
        if not os.path.isdir(partial):
            os.makedirs(partial)
            with atomic_path(meta_path) as tmp, open(tmp, "w") as fh:
                json.dump({"fingerprint": fingerprint, "n_samples": len(samples)}, fh)
        chunks = [(i, samples[s:s + chunk_size], s) for i, s in enumerate(range(0, len(samples), chunk_size))]
        # the table's feature array, filled as chunks come (while the workers compute the others)
        # rather than after the last one; a chunk keeps its other, small columns until the end
        X = np.empty((len(samples), len(names)), dtype=np.float32)
        firsts = {i: first for i, _, first in chunks}
        results = {}

        def take(index, chunk):
            rows = chunk.pop("X")
            X[firsts[index]:firsts[index] + len(rows)] = rows
            results[index] = chunk

        for i, chunk, _ in chunks:
            path = _chunk_path(partial, i)
            if os.path.exists(path):
                try:
                    saved = _load_chunk(path)
                    if (saved["X"].shape != (len(chunk), len(names))
                            or {len(saved["status"]), len(saved["n_faces"])} != {len(chunk)}
                            or flip != ("X_flip" in saved)):
                        raise ValueError("checkpoint does not match its chunk")
                    take(i, saved)
                except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
                    os.remove(path)  # a damaged checkpoint is recomputed
        pending = [c for c in chunks if c[0] not in results]
        done_before = sum(len(c[1]) for c in chunks if c[0] in results)
        if pixelize_dir:
            os.makedirs(pixelize_dir, exist_ok=True)
        from tqdm import tqdm

        tqdm.monitor_interval = 0  # no monitor thread: the local workers are forked from a process of one thread
        bar = tqdm(total=len(samples), initial=done_before, unit="img", disable=not progress,
                   desc=f"extract {os.path.basename(os.path.normpath(os.fspath(dataset)))}", file=sys.stderr)
        if pending:
            with compute_backend(backend, scheduler):
                if backend == "dask":  # workers resolve paths themselves: make them absolute
                    pending = [(i, [_absolute(s) for s in chunk], first) for i, chunk, first in pending]
                    n_jobs = -1
                else:
                    n_jobs = min(jobs if jobs > 0 else os.cpu_count() or 1, len(pending))
                tasks = [(i, chunk, config, len(names), pixelize_dir, first, flip) for i, chunk, first in pending]
                with _chunk_results(tasks, n_jobs, backend, config) as stream:
                    for index, chunk in stream:
                        with atomic_path(_chunk_path(partial, index)) as tmp, open(tmp, "wb") as fh:
                            np.savez(fh, **chunk)
                        take(index, chunk)
                        bar.update(len(chunk["status"]))
        bar.close()
        def column(key):
            return np.concatenate([results[i][key] for i, _, _ in chunks])

        status, n_faces = column("status").astype(str), column("n_faces")
        labels = np.array([s.label for s in samples])
        subjects = np.array([s.subject for s in samples])
        sources = np.array([s.source for s in samples])
        splits = np.array([s.split for s in samples])
        augmented = np.zeros(len(samples), dtype=bool)
        targets = np.array([np.nan if s.target is None else s.target for s in samples], dtype=np.float32)
        if flip:
            keep = column("flip_ok")
            X = np.concatenate([X, column("X_flip")[keep]])
            labels, subjects, splits, targets = (np.concatenate([a, a[keep]]) for a in (labels, subjects, splits, targets))
            sources = np.concatenate([sources, np.char.add(sources[keep], "#flip")])
            status = np.concatenate([status, status[keep]])
            n_faces = np.concatenate([n_faces, n_faces[keep]])
            augmented = np.concatenate([augmented, np.ones(int(keep.sum()), dtype=bool)])
        table = FeatureTable(
            X=X, columns=np.array(names), groups=slices, labels=labels, subjects=subjects, sources=sources,
            splits=splits, status=status, n_faces=n_faces, augmented=augmented,
            targets=targets, target_name=TARGET_NAMES.get(preset, "") if np.any(np.isfinite(targets)) else "",
            config=config.to_dict(), dataset=os.path.basename(os.path.normpath(os.fspath(dataset))), preset=preset)
        table.save(output)
        shutil.rmtree(partial, ignore_errors=True)
    elapsed = time.time() - started
    computed = len(samples) - done_before
    summary = {
        "images": len(samples), "faces": int((status[~augmented] == "ok").sum()),
        "mirrored": int(augmented.sum()),
        "failures": dict(sorted(collections.Counter(s for s in status[~augmented] if s != "ok").items())),
        "resumed": done_before, "seconds": round(elapsed, 2),
        "images_per_second": round(computed / elapsed, 1) if elapsed > 0 else None,
    }
    return table, summary


def format_summary(summary, output):
    failures = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in summary["failures"].items()) or "none"
    resumed = f" ({summary['resumed']} resumed from a checkpoint)" if summary["resumed"] else ""
    mirrored = f" (+{summary['mirrored']} mirrored)" if summary.get("mirrored") else ""
    return (f"{output}: {summary['images']} images{resumed}, {summary['faces']} faces described{mirrored}; "
            f"failures: {failures}; {summary['seconds']} s, {summary['images_per_second']} images/s")


@command("extract")
@click.argument("dataset", type=click.Path(exists=True))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Feature table to write (.npz), e.g. data/ckplus48.npz.")
@click.option("--preset", type=click.Choice(PRESETS), default=None,
              help="Dataset layout and subject naming. Default: guessed from the path "
                   "(fer2013 for train/+test/ folders or a .csv, utkface for a folder named utk*).")
@detector_options(DETECTORS, default="auto")
@click.option("--groups", default=None,
              help=f"Comma-separated feature groups to compute, from: {', '.join(GROUPS)}. Default: "
                   f"{', '.join(DEFAULT_GROUPS)}; for UTKFace (age and gender) also face_lbp.")
@jobs_option()
@click.option("--pixelize", "pixelize_dir", type=click.Path(file_okay=False), default=None,
              help="Also write each image with its landmarks drawn into this folder.")
@click.option("--limit", type=click.IntRange(1), default=None, help="Only the first N images (for a quick look).")
@backend_options()
@click.option("--flip", is_flag=True, help="Also store a mirrored copy of every face (training augmentation; "
              "benchmarks train on the copies of training images only and never test on them).")
@quiet_option
def main(dataset, output, preset, detector, upsample, groups, jobs, pixelize_dir, limit, backend, scheduler, flip, quiet):
    """Extract landmarks and features of every image in DATASET into one feature table.

    DATASET is a class-per-folder tree (DATASET/<class>/<image>), the FER-2013 folder
    release (train/ and test/), the original fer2013.csv, or a UTKFace folder (--preset
    utkface: AGE_GENDER_RACE_TIMESTAMP.jpg; the table's labels are the apparent gender,
    female or male, and its numeric target the age; the race field is not read).
    Rerunning after an interruption resumes from the checkpoints in OUTPUT.partial/.
    """
    try:
        if groups is None:
            groups = default_groups(preset or guess_preset(dataset))
        else:
            groups = tuple(g.strip() for g in groups.split(",") if g.strip())
        config = FeatureConfig(detector=detector, upsample=upsample, groups=groups)
        _, summary = extract_dataset(dataset, output, preset, config, jobs, pixelize_dir=pixelize_dir,
                                     progress=not quiet, limit=limit, backend=backend, scheduler=scheduler, flip=flip)
    except ValueError as exc:  # e.g. an unknown feature group
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        click.echo(f"interrupted: rerun the same command to resume from {output}.partial/", err=True)
        sys.exit(EXIT_INTERRUPTED)
    click.echo(format_summary(summary, output))


if __name__ == "__main__":
    main()
