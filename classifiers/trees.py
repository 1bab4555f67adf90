"""The decision trees of a model file, checked before native code walks them.

scikit-learn's and XGBoost's prediction code follows a tree's child indices and reads the
feature each node names without checking either: in a crafted file, a child index outside the
node array or a feature index beyond the columns crashes the process (segmentation fault), and
a node that is its own child loops forever. Every tree that comes out of a model file is
therefore checked here, with numpy, before anything predicts with it:

* it is a binary tree rooted at node 0: a node has two children or none, every child comes
  after its parent in the node array (so no path can loop) and every node but the root is the
  child of exactly one node (so none is shared, none unreachable);
* it is at most MAX_DEPTH levels deep (SHAP's tree explainer allocates by depth squared);
* every split names a feature index below the number of columns the tree receives;
* split thresholds and leaf values are finite.

XGBoost boosters are stored as UBJSON (:meth:`classifiers.models.XGBoostModel.__getstate__`);
:func:`check_xgboost_ubj` decodes that in Python, within bounds, and checks the trees before the
bytes reach XGBoost's own loader.
"""

import struct

import numpy as np

#: Deepest tree accepted. A Random Forest grown to pure leaves on 57k faces is a few dozen levels
#: deep, an XGBoost tree at most max_depth (3-6 here).
MAX_DEPTH = 1000
#: XGBoost writes this as the root's parent.
XGBOOST_ROOT_PARENT = 2147483647


class TreeError(ValueError):
    """A tree (or booster) whose structure could make native code crash or loop."""


def check_tree(left, right, features, n_features, values=(), where="a tree"):
    """Raise TreeError unless ``left`` / ``right`` (child indices, -1 for a leaf) describe a binary
    tree rooted at node 0 whose splits read ``features`` below ``n_features`` (see the module notes);
    ``values``: arrays (thresholds, leaf values) that must be finite. Returns the tree's depth."""
    return check_trees([(left, right, features, values)], n_features, [where])[0]


def check_trees(trees, n_features, names):
    """:func:`check_tree` of every ``(left, right, features, values)`` of ``trees`` (named ``names``
    in messages), all at once: the trees are laid end to end and checked as one array, so a forest of
    hundreds of trees costs a few numpy passes, not hundreds. Returns each tree's depth."""
    if not trees:
        return []
    arrays = []
    for (left, right, features, _), where in zip(trees, names):
        left, right, features = np.asarray(left), np.asarray(right), np.asarray(features)
        n = len(left)
        if n < 1 or left.shape != (n,) or right.shape != (n,) or features.shape != (n,) or \
                not all(a.dtype.kind in "iu" for a in (left, right, features)):
            raise TreeError(f"{where}: node arrays of different lengths or types")
        arrays.append((left, right, features))
    sizes = np.array([len(a[0]) for a in arrays], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    total = int(sizes.sum())
    tree_of = np.repeat(np.arange(len(trees)), sizes)     # which tree each node is in
    start, end = starts[tree_of], (starts + sizes)[tree_of]
    left, right, features = (np.concatenate([a[k] for a in arrays]).astype(np.int64) for k in range(3))

    def fail(nodes, what):  # the first tree holding one of ``nodes``
        raise TreeError(f"{names[int(tree_of[np.asarray(nodes)[0]])]}: {what}")

    leaf = left == -1
    bad = np.flatnonzero(leaf != (right == -1))
    if len(bad):
        fail(bad, "a node with one child")
    inner = np.flatnonzero(~leaf)
    local = np.concatenate([left[inner], right[inner]])          # child indices inside each tree
    parents = np.concatenate([inner, inner])
    children = local + start[parents]
    bad = parents[(local < 0) | (children <= parents) | (children >= end[parents])]
    if len(bad):
        fail(bad, "a child index before its parent or outside the tree's nodes")
    is_child = np.zeros(total, dtype=np.int64)
    np.add.at(is_child, children, 1)
    root = np.zeros(total, dtype=bool)
    root[starts] = True
    bad = np.flatnonzero(is_child != ~root)
    if len(bad):
        fail(bad, "a node with two parents, or one no path reaches")
    split = features[inner]
    bad = inner[(split < 0) | (split >= n_features)]
    if len(bad):
        fail(bad, f"a split on a feature outside the {n_features} columns")
    for (_, _, _, values), where in zip(trees, names):
        for array in values:
            array = np.asarray(array)
            if array.dtype.kind not in "iuf" or not np.all(np.isfinite(array)):
                raise TreeError(f"{where}: thresholds or values that are not numbers, or NaN or infinity")
    # depth by pointer jumping: every node adds its ancestor's distance and jumps twice as far
    up = np.arange(total)
    up[children] = parents
    depth = (~root).astype(np.int64)
    for _ in range(int(np.log2(MAX_DEPTH)) + 2):
        if np.all(root[up]):
            break
        depth, up = depth + np.where(root[up], 0, depth[up]), up[up]
    if not np.all(root[up]) or depth.max() > MAX_DEPTH:
        fail(np.flatnonzero(depth == depth.max()), f"deeper than {MAX_DEPTH} levels")
    return np.maximum.reduceat(depth, starts).tolist()


def check_sklearn_tree(tree, n_features, where="a tree"):
    """A fitted scikit-learn ``sklearn.tree._tree.Tree`` against the ``n_features`` columns its
    estimator receives."""
    _check_sklearn_trees([(tree, n_features, where)])


def _check_sklearn_trees(pending):
    """:func:`check_sklearn_tree` of every ``(tree, n_features, where)``, the structures at once."""
    for tree, n_features, where in pending:
        if int(tree.n_features) != int(n_features):
            raise TreeError(f"{where}: built for {tree.n_features} features, receives {n_features}")
        if int(tree.node_count) < 1 or int(tree.n_outputs) < 1:
            raise TreeError(f"{where}: no nodes or no outputs")
    for n_features in sorted({int(n) for _, n, _ in pending}):
        group = [(tree, where) for tree, n, where in pending if int(n) == n_features]
        check_trees([(t.children_left, t.children_right, t.feature, (t.threshold, t.value)) for t, _ in group],
                    n_features, [where for _, where in group])


def sklearn_tree_problems(estimator, root="pipeline"):
    """Where the scikit-learn trees inside ``estimator`` fail :func:`check_sklearn_tree` (messages).

    A decision tree receives its own ``n_features_in_`` columns; the trees of a forest or of
    gradient boosting receive the ensemble's (they are called without checking their input)."""
    from sklearn.base import BaseEstimator

    found, pending, seen, stack = [], [], set(), [(root, estimator)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, (str, bytes, int, float, type(None), np.generic)) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, dict):
            stack.extend((f"{where}[{k!r}]", v) for k, v in item.items())
        elif isinstance(item, (list, tuple)):
            stack.extend((f"{where}[{i}]", v) for i, v in enumerate(item))
        elif isinstance(item, np.ndarray):
            if item.dtype == object:
                stack.extend((f"{where}[{i}]", v) for i, v in enumerate(item.ravel()))
        elif isinstance(item, BaseEstimator):
            tree = getattr(item, "tree_", None)
            if tree is not None:
                pending.append((tree, getattr(item, "n_features_in_", tree.n_features), f"{where}.tree_"))
            members = getattr(item, "estimators_", None)
            if members is not None and hasattr(item, "n_features_in_") and not hasattr(item, "estimators_features_"):
                for i, member in enumerate(np.ravel(np.asarray(members, dtype=object))):
                    sub = getattr(member, "tree_", None)
                    if sub is not None and int(sub.n_features) != int(item.n_features_in_):
                        found.append(f"{where}.estimators_[{i}]: built for {sub.n_features} features, "
                                     f"receives {item.n_features_in_}")
            stack.extend((f"{where}.{k}", v) for k, v in vars(item).items() if k != "tree_")
    try:
        _check_sklearn_trees(pending)
    except TreeError as exc:
        found.append(str(exc))
    return found


# ---- XGBoost ----------------------------------------------------------------------------------------

_UBJ_NUMBERS = {b"i": ">i1", b"U": "u1", b"I": ">i2", b"l": ">i4", b"L": ">i8", b"d": ">f4", b"D": ">f8"}
_UBJ_STRUCTS = {m: struct.Struct(f">{code}") for m, code in
                zip(_UBJ_NUMBERS, ("b", "B", "h", "i", "q", "f", "d"))}
#: Nesting of an XGBoost model document (measured: 6).
UBJ_DEPTH = 32


class _UBJReader:
    """A bounded reader of the UBJSON (draft 12) that XGBoost writes: numbers, strings, booleans, null,
    arrays (typed ones become numpy arrays) and objects. Raises TreeError on anything else."""

    def __init__(self, data):
        self.data, self.pos = bytes(data), 0

    def take(self, n):
        if n < 0 or self.pos + n > len(self.data):
            raise TreeError("the XGBoost model is truncated")
        self.pos += n
        return self.data[self.pos - n:self.pos]

    def peek(self):
        return self.data[self.pos:self.pos + 1]

    def marker(self):
        while True:
            m = self.take(1)
            if m != b"N":  # no-op
                return m

    def number(self, m):
        unpack = _UBJ_STRUCTS.get(m)
        if unpack is None:
            raise TreeError(f"the XGBoost model holds an unknown UBJSON marker {m!r}")
        if self.pos + unpack.size > len(self.data):
            raise TreeError("the XGBoost model is truncated")
        value = unpack.unpack_from(self.data, self.pos)[0]
        self.pos += unpack.size
        return value

    def length(self):
        n = self.number(self.marker())
        if not isinstance(n, int) or n < 0 or n > len(self.data) - self.pos:
            raise TreeError("the XGBoost model declares a length beyond its size")
        return n

    def value(self, m, depth):
        if depth > UBJ_DEPTH:
            raise TreeError(f"the XGBoost model nests deeper than {UBJ_DEPTH} levels")
        if m in _UBJ_STRUCTS:
            return self.number(m)
        if m in (b"T", b"F", b"Z"):
            return {b"T": True, b"F": False, b"Z": None}[m]
        if m in (b"S", b"H"):
            return self.take(self.length()).decode("utf-8", "replace")
        if m == b"C":
            return self.take(1).decode("latin-1")
        if m in (b"[", b"{"):
            return self.container(m, depth)
        raise TreeError(f"the XGBoost model holds an unknown UBJSON marker {m!r}")

    def container(self, opening, depth):
        kind = count = None
        if self.peek() == b"$":
            self.take(1)
            kind = self.marker()
            if self.peek() != b"#" or kind not in _UBJ_NUMBERS and kind not in (b"S", b"[", b"{"):
                raise TreeError("the XGBoost model holds an unsupported typed container")
        if self.peek() == b"#":
            self.take(1)
            count = self.length()
        if opening == b"[" and kind in _UBJ_NUMBERS:
            size = np.dtype(_UBJ_NUMBERS[kind]).itemsize
            if count * size > len(self.data) - self.pos:
                raise TreeError("the XGBoost model declares an array beyond its size")
            return np.frombuffer(self.take(count * size), _UBJ_NUMBERS[kind]).astype(_UBJ_NUMBERS[kind][-2:])
        items = [] if opening == b"[" else {}
        while count is None or len(items) < count:
            if count is None:
                m = self.marker()
                if m == (b"]" if opening == b"[" else b"}"):
                    break
                if opening == b"{":
                    self.pos -= 1  # the key's length marker
            if opening == b"{":
                key = self.take(self.length()).decode("utf-8", "replace")
                items[key] = self.value(kind or self.marker(), depth + 1)
            else:
                items.append(self.value(kind or (m if count is None else self.marker()), depth + 1))
        return items


def decode_ubj(data):
    """The document of XGBoost UBJSON ``data`` (bytes), bounded (see :class:`_UBJReader`)."""
    reader = _UBJReader(data)
    doc = reader.value(reader.marker(), 0)
    if reader.pos != len(reader.data):
        raise TreeError("the XGBoost model has bytes after its end")
    return doc


def _integer(value, what):
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        raise TreeError(f"the XGBoost model's {what} is not a number") from None
    if isinstance(value, bool) or number < 0:
        raise TreeError(f"the XGBoost model's {what} is not a number")
    return number


def check_xgboost_document(doc, n_features, n_classes):
    """Raise TreeError unless the decoded XGBoost model ``doc`` is a multi:softprob gbtree over
    ``n_features`` columns and ``n_classes`` classes (``n_classes`` None: a reg:squarederror
    regressor) whose every tree passes :func:`check_tree`."""
    try:
        learner = doc["learner"]
        param = learner["learner_model_param"]
        objective = learner["objective"]["name"]
        booster = learner["gradient_booster"]
        model = booster["model"]
        trees, tree_info = model["trees"], np.asarray(model["tree_info"])
        n_trees = _integer(model["gbtree_model_param"]["num_trees"], "tree count")
        n_parallel = _integer(model["gbtree_model_param"].get("num_parallel_tree", 1), "parallel tree count")
        indptr = np.asarray(model.get("iteration_indptr", [0, len(trees)]))
        cats = model.get("cats", {})
        feature_types = learner.get("feature_types", [])
    except (KeyError, TypeError, AttributeError, IndexError):
        raise TreeError("the XGBoost model lacks the parts of a gbtree model") from None
    expected = "reg:squarederror" if n_classes is None else "multi:softprob"
    if objective != expected or booster.get("name") != "gbtree":
        raise TreeError(f"the XGBoost model is not a {expected} gbtree ({str(objective)[:40]})")
    if _integer(param.get("num_feature"), "feature count") != n_features:
        raise TreeError(f"the XGBoost model reads {param.get('num_feature')!r} features, receives {n_features}")
    if _integer(param.get("num_class"), "class count") != (n_classes or 0) or \
            _integer(param.get("num_target", 1), "target count") != 1:
        raise TreeError(f"the XGBoost model predicts {param.get('num_class')!r} classes, the model has {n_classes}")
    if not isinstance(trees, list) or n_trees != len(trees) or n_parallel != 1 or tree_info.shape != (n_trees,) \
            or tree_info.dtype.kind not in "iu" or np.any(tree_info < 0) or np.any(tree_info >= (n_classes or 1)):
        raise TreeError("the XGBoost model's tree count or tree classes do not match its trees")
    if indptr.ndim != 1 or indptr.dtype.kind not in "iu" or len(indptr) < 1 or indptr[0] != 0 \
            or indptr[-1] != n_trees or np.any(np.diff(indptr) < 0):
        raise TreeError("the XGBoost model's iterations do not match its trees")
    if any(np.size(v) for v in (cats.values() if isinstance(cats, dict) else [cats])) or \
            (isinstance(feature_types, list) and "c" in feature_types):
        raise TreeError("the XGBoost model has categorical splits (never trained here)")
    checked = []
    for t, tree in enumerate(trees):
        where = f"XGBoost tree {t}"
        try:
            shape = tree["tree_param"]
            n = _integer(shape["num_nodes"], "node count")
            arrays = {name: np.asarray(tree[name]) for name in (
                "left_children", "right_children", "parents", "split_indices", "split_conditions", "split_type",
                "default_left", "base_weights", "loss_changes", "sum_hessian")}
            extra = [np.size(tree.get(name, [])) for name in ("categories", "categories_nodes",
                                                               "categories_segments", "categories_sizes")]
            deleted = _integer(shape.get("num_deleted", 0), "deleted node count")
            leaf_vector = _integer(shape.get("size_leaf_vector", 1), "leaf size")
            tree_features = _integer(shape.get("num_feature", n_features), "feature count")
        except (KeyError, TypeError, AttributeError):
            raise TreeError(f"{where}: lacks the parts of a tree") from None
        if any(a.shape != (n,) for a in arrays.values()) or any(extra) or deleted or leaf_vector > 1 \
                or tree_features != n_features:
            raise TreeError(f"{where}: arrays of other lengths than its {n} nodes, deleted nodes, categories "
                            f"or vector leaves")
        if arrays["split_type"].dtype.kind not in "iub" or np.any(arrays["split_type"] != 0):
            raise TreeError(f"{where}: a categorical split (never trained here)")
        if arrays["parents"].dtype.kind not in "iu":
            raise TreeError(f"{where}: parents that are not node indices")
        checked.append(arrays)
    check_trees([(a["left_children"], a["right_children"], a["split_indices"],
                  (a["split_conditions"], a["base_weights"])) for a in checked],
                n_features, [f"XGBoost tree {t}" for t in range(len(checked))])
    if checked:  # the structure is sound: every inner node's children name it as their parent
        sizes = np.array([len(a["parents"]) for a in checked])
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        start = np.repeat(starts, sizes)
        parents, left, right = (np.concatenate([a[k] for a in checked]).astype(np.int64)
                                for k in ("parents", "left_children", "right_children"))
        inner = np.flatnonzero(left != -1)
        if np.any(parents[starts] != XGBOOST_ROOT_PARENT) or \
                np.any(parents[left[inner] + start[inner]] != inner - start[inner]) or \
                np.any(parents[right[inner] + start[inner]] != inner - start[inner]):
            raise TreeError("an XGBoost tree has parents that do not match its children")


def check_xgboost_ubj(raw, n_features, n_classes):
    """:func:`check_xgboost_document` of XGBoost UBJSON bytes ``raw``."""
    if not isinstance(raw, (bytes, bytearray)):
        raise TreeError("the XGBoost model is not stored as bytes")
    check_xgboost_document(decode_ubj(raw), n_features, n_classes)
