"""Bounds on what an untrusted file may make the process parse: JSON is read only after its size and
its nesting depth are known to be small (model files' meta.json and skops schema, feature tables'
metadata), and a .npy array only after its header is known to describe the bytes it comes with.

Python's JSON parser holds a whole document in memory many times over (a 440 MB meta.json took
5.4 GB) and recurses once per level, so both are checked on the raw bytes first, in linear time.
"""

import json
import re

import numpy as np

#: A JSON string (its escapes included), removed before brackets are counted.
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_OPEN, _CLOSE = np.frombuffer(b"[{", np.uint8), np.frombuffer(b"]}", np.uint8)


def json_depth(data):
    """How deeply the arrays and objects of the JSON text ``data`` (bytes) nest (0 for a scalar)."""
    codes = np.frombuffer(_STRING.sub(b'""', bytes(data)), np.uint8)
    steps = np.isin(codes, _OPEN).astype(np.int64) - np.isin(codes, _CLOSE)
    return int(np.cumsum(steps).max(initial=0))


def loads_bounded(data, max_bytes, max_depth, what="the JSON text"):
    """``json.loads(data)`` for bytes or str of at most ``max_bytes`` bytes nested at most
    ``max_depth`` levels; raises ValueError (naming ``what``) otherwise, before parsing."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    if len(data) > max_bytes:
        raise ValueError(f"{what} is {len(data):,} bytes, more than the {max_bytes:,} allowed")
    depth = json_depth(data)
    if depth > max_depth:
        raise ValueError(f"{what} nests {depth} levels deep, more than the {max_depth} allowed")
    return json.loads(data.decode("utf-8"))


def npy_header(fh, what="the array"):
    """(shape, dtype) from the header of the .npy stream ``fh`` (left just after the header); raises
    ValueError for another format version or a header numpy refuses."""
    version = np.lib.format.read_magic(fh)
    if version not in ((1, 0), (2, 0)):
        raise ValueError(f"{what} is stored in .npy format {version}")
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, dtype = read(fh)
    return shape, dtype


def check_npy(data, what="the array"):
    """Raise ValueError unless the .npy bytes ``data`` hold the data their header declares (numpy
    allocates what the header says before it reads a byte: 4 TB for a 1 kB file) and no objects."""
    import io

    fh = io.BytesIO(data)
    shape, dtype = npy_header(fh, what)
    declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if dtype.hasobject or declared > len(data) - fh.tell():
        raise ValueError(f"{what} declares {declared:,} bytes of {dtype} data and holds {len(data) - fh.tell():,}")


def check_whole_number(name, value, least, most=None):
    """ValueError unless ``value`` is a whole number (not a bool) from ``least`` to ``most`` (no upper
    bound when None), naming ``name``: for arguments that size work, such as upsampling steps."""
    if (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least
            or (most is not None and value > most)):
        bounds = f"from {least} to {most}" if most is not None else f"of at least {least}"
        raise ValueError(f"{name} must be a whole number {bounds}, not {value!r:.40}")
