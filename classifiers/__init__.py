"""Stage 3: which emotion, and why; and the library's public API.

    from classifiers import recognise
    for face in recognise("photo.jpg"):
        print(face.box, face.label, face.probabilities[face.label])

* :mod:`classifiers.api`       THE public API: ``recognise`` (image -> list[FacePrediction]),
  ``recognise_many`` (many images, all cores), ``load_model`` (cached)
* :mod:`classifiers.artifact`  the model file: skops pipeline + meta.json in a zip, loaded without pickle
* :mod:`classifiers.linear`    a linear model's numeric form: its probabilities with numpy alone (fast start)
* :mod:`classifiers.explain`   signed contributions of named features, per face
* :mod:`classifiers.models`    scikit-learn Pipelines (GroupSelector -> scaling -> model) and their grids
* :mod:`classifiers.benchmark` compare models on one table: the orchestration and its command, built on
  :mod:`classifiers.protocol` (which folds), :mod:`classifiers.search` (inner grid search, the same folds
  for every model), :mod:`classifiers.results` (the results type) and :mod:`classifiers.report` (report files)
* :mod:`classifiers.train`     fit one model on feature tables -> one model file
* :mod:`classifiers.predict`   the ``predict`` command: images / folders -> text, JSON, CSV, pictures
* :mod:`classifiers.evaluate`  a model file on a labelled class-per-folder dataset

Command line: ``facial-expressions --help`` (or ``python -m classifiers.<command> --help``).
"""

from .artifact import DEFAULT_MODEL, Model, save_model
from .api import Explanation, FacePrediction, Reason, load_model, recognise, recognise_many

__all__ = ["DEFAULT_MODEL", "Explanation", "FacePrediction", "Model", "Reason", "load_model", "recognise",
           "recognise_many", "save_model"]
