# Facial-expression recognition: classical ML on dlib landmarks.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
DATASETS ?= ../shared/datasets
DATASET  ?= $(DATASETS)/ckplus48
PRESET   ?=
DETECTOR ?= auto
JOBS     ?= -1
FEATURES ?= data/$(notdir $(DATASET)).npz

.PHONY: install test features benchmark model demo clean help

help:
	@echo "make install     create $(VENV) and install the project with its dependencies"
	@echo "make test        run the test suite (real datasets from $(DATASETS))"
	@echo "make features    extract a feature table: DATASET=dir [PRESET=ckplus48|jaffe|fer2013|folder] -> $(FEATURES)"
	@echo "make benchmark   compare the classical models on FEATURES"
	@echo "make model       train the shipped default model"
	@echo "make demo        predict the emotion on a sample photo"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

install: $(PY)
	$(PY) -m pip install --quiet -e ".[test]"
	$(PY) -c "import dlib, cv2, sklearn, xgboost, landmarks, features, classifiers; print('installed: dlib', dlib.__version__, '| opencv', cv2.__version__, '| scikit-learn', sklearn.__version__, '| xgboost', xgboost.__version__)"

test:
	$(PY) -m pytest -q

features:
	$(PY) -m features.extract $(DATASET) -o $(FEATURES) $(if $(PRESET),--preset $(PRESET)) --detector $(DETECTOR) --jobs $(JOBS)

clean:
	rm -rf build *.egg-info .pytest_cache
