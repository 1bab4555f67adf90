"""XGBoost on a Dask cluster, for training data larger than one machine.

``train_xgboost_dask`` trains with XGBoost's own Dask interface (``xgboost.dask``): the
rows stay partitioned across the workers, each worker builds histograms of its part, and
the booster comes back to the client. The result is the same pipeline type as a local
``xgboost`` model (GroupSelector -> XGBoostModel), so it is saved, loaded, explained and
used by ``predict`` exactly like one.
"""

import numpy as np
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.class_weight import compute_sample_weight

from .models import GroupSelector, XGBoostModel, slices_of


def train_xgboost_dask(client, X, y, groups, seed=0, chunk_rows=4096, **params):
    """Fit an ``xgboost`` pipeline on the cluster of ``client``.

    ``X`` may be a numpy array or a dask array (rows partitioned however the caller loaded
    them); ``groups`` is the table's {group: slice}. ``params`` are XGBoostModel parameters.
    """
    import dask.array as da
    import xgboost as xgb
    import xgboost.dask  # noqa: F401  (registers xgb.dask)

    model = XGBoostModel(random_state=seed, **params)
    selector = GroupSelector(groups=None, slices=slices_of(groups)).fit(np.zeros((1, X.shape[1])))
    encoder = LabelEncoder().fit(np.asarray(y))
    codes = encoder.transform(np.asarray(y))
    weight = compute_sample_weight(model.class_weight, codes) if model.class_weight is not None else None
    dX = X if isinstance(X, da.Array) else da.from_array(np.asarray(X, dtype=np.float32), chunks=(chunk_rows, -1))
    dX = dX[:, selector.columns_]
    dy = da.from_array(codes, chunks=dX.chunks[0])
    dw = None if weight is None else da.from_array(weight, chunks=dX.chunks[0])
    dtrain = xgb.dask.DaskDMatrix(client, dX, dy, weight=dw)
    params = model._params(len(encoder.classes_))
    params.pop("nthread", None)
    output = xgb.dask.train(client, params, dtrain, num_boost_round=int(model.n_estimators))
    model.booster_ = output["booster"]
    model.classes_ = encoder.classes_
    model.n_features_in_ = len(selector.columns_)
    return Pipeline([("select", selector), ("model", model)])
