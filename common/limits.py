"""Bounds on what an untrusted file may make the process parse: JSON is read only after its size and
its nesting depth are known to be small (model files' meta.json and skops schema, feature tables'
metadata).

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
