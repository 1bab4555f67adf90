"""What every stage uses, in one small home: error types (:mod:`common.errors`), files written
whole or not at all and output locks (:mod:`common.files`), the local/Dask parallel runner
(:mod:`common.parallel`) and the label tables and schemes (:mod:`common.labels`).

Nothing here imports ``landmarks``, ``features``, ``classifiers`` or the applications.
"""
