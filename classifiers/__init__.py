"""Stage 3: which emotion, and why.

* :mod:`classifiers.models`    scikit-learn Pipelines (GroupSelector -> scaling -> model) and their grids
* :mod:`classifiers.benchmark` the same folds for every model, inner grid search, report files
* :mod:`classifiers.train`     fit one model on feature tables -> one model file
* :mod:`classifiers.artifact`  the model file: skops pipeline + meta.json in a zip, loaded without pickle
* :mod:`classifiers.linear`    a linear model's numeric form: its probabilities with numpy alone (fast start)
* :mod:`classifiers.predict`   image(s) / folder -> per face: box, label, probabilities, landmarks
* :mod:`classifiers.evaluate`  a model file on a labelled class-per-folder dataset

Command-line entry points: ``python -m classifiers.<benchmark|train|predict|evaluate> --help``.
"""

from .artifact import DEFAULT_MODEL, Model, load_model, save_model

__all__ = ["DEFAULT_MODEL", "Model", "load_model", "save_model"]
