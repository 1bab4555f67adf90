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
# benchmark: REPORT folder, MODELS=rf,svm_rbf,... (default all), QUICK=1 for small grids and 5 folds,
# SCHEME=each (or basic7,basic6,valence3) for one report per label scheme plus REPORT/schemes.md
REPORT   ?= reports/$(basename $(notdir $(FEATURES)))
MODELS   ?=
QUICK    ?=
SEED     ?= 0
CLF_JOBS ?= 2
SCHEME   ?=
# the shipped default model: trained on these tables, these labels (FER-2013 faces: their FER+ majority)
DEFAULT_MODEL  ?= classifiers/models/default.skops
MODEL_TABLES   ?= data/ckplus48.npz data/jaffe.npz data/fer2013.npz
MODEL_LABELS   ?= angry,disgust,fear,happy,neutral,sad,surprise
MODEL_NAME     ?= logreg
MODEL_ARGS     ?= --quick --ferplus $(DATASETS)/fer2013/ferplus.csv
DEMO_IMAGE     ?= $(shell $(PY) -c "import matplotlib.cbook as c; print(c.get_sample_data('grace_hopper.jpg', asfileobj=False))" 2>/dev/null)

.PHONY: install install-browser test test-fast fuzz features benchmark model demo clean help

help:
	@echo "make install     create $(VENV) and install the project with its dependencies"
	@echo "make install-browser  install Debian's chromium for the browser tests (as root, when /usr/bin/chromium is missing)"
	@echo "make test        run the test suite: the unit tier, then the integration tier (real datasets from $(DATASETS)), on TEST_JOBS=2 processes (0: one)"
	@echo "make test-fast   run the unit tier only (no dataset needed)"
	@echo "make fuzz        the fuzz tier with a large budget: FUZZ_EXAMPLES mutated model files and images per test (default 1000)"
	@echo "make features    extract a feature table: DATASET=dir [PRESET=ckplus48|jaffe|fer2013|folder] -> $(FEATURES)"
	@echo "make benchmark   compare the classical models on FEATURES -> REPORT: FEATURES=data/ckplus48.npz REPORT=reports/ckplus48 [MODELS=rf,svm_rbf] [QUICK=1] [SCHEME=each]"
	@echo "make model       train the shipped default model ($(MODEL_NAME) on $(MODEL_TABLES)) -> $(DEFAULT_MODEL)"
	@echo "make demo        predict the emotion on matplotlib's sample photo -> out/demo.png"

$(PY):
	$(PYTHON) -m venv $(VENV)

# uv (Astral's installer, from PyPI) downloads and unpacks in parallel and installs the same packages
# and versions as pip in a fraction of its time (BENCHMARKS.md); INSTALLER=pip, or a machine where uv
# cannot be had, installs with pip.
INSTALLER ?= uv
# The project's own packages are byte-compiled too (an editable install leaves them as sources):
# where PYTHONDONTWRITEBYTECODE is set, as on this machine, every process would otherwise compile
# them again, about 0.9 s of CPU for one that imports the web app, the benchmark and training.
PACKAGES := landmarks common features classifiers facial_expressions
# An environment made before the switch to xgboost-cpu holds the GPU build: both distributions
# own the same `xgboost` files, so the old one (and its NVIDIA library) goes first.
install: $(PY)
	@if $(PY) -m pip show -q xgboost 2>/dev/null; then $(PY) -m pip uninstall --quiet -y xgboost nvidia-nccl-cu12; fi
	@if [ "$(INSTALLER)" = uv ]; then $(PY) -m pip install --quiet uv 2>/dev/null || echo "uv could not be installed: installing with pip (slower)"; fi
	@if [ "$(INSTALLER)" = uv ] && [ -x $(VENV)/bin/uv ]; then \
		echo "$(VENV)/bin/uv pip install --compile-bytecode --python $(PY) -e \".[all,test]\""; \
		$(VENV)/bin/uv pip install --quiet --compile-bytecode --python $(PY) -e ".[all,test]"; \
	else $(PY) -m pip install --quiet -e ".[all,test]"; fi
	$(PY) -m compileall -q -j 0 $(PACKAGES)
	$(PY) -c "import dlib, cv2, sklearn, xgboost, landmarks, features, classifiers; print('installed: dlib', dlib.__version__, '| opencv', cv2.__version__, '| scikit-learn', sklearn.__version__, '| xgboost', xgboost.__version__)"

# the browser tests (tests/test_web_page.py) drive Debian's chromium through Playwright; Playwright's
# own browser download cannot work offline, so the system package it is
install-browser:
	@test -x /usr/bin/chromium || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }
	@/usr/bin/chromium --version

# the unit tier runs with the datasets hidden, so a unit test that needs one fails
# TEST_JOBS test processes (pytest-xdist); a module's tests stay in one process, so a module's
# server or cluster starts once. TEST_JOBS=0 runs them in this process.
TEST_JOBS ?= 2
HAVE_XDIST = $(shell $(PY) -c "import xdist" 2>/dev/null && echo yes)
TEST_ARGS = $(if $(filter 0,$(TEST_JOBS)),,$(if $(HAVE_XDIST),-n $(TEST_JOBS) --dist loadscope,$(warning pytest-xdist is missing (make install adds it): the tests run in one process)))

# pytest caches its assertion-rewritten test modules as bytecode, unless PYTHONDONTWRITEBYTECODE
# is set (as on this machine): then each test process rewrote them all again, about 3.5 s each
BYTECODE := PYTHONDONTWRITEBYTECODE=

test-fast:
	$(BYTECODE) FER_DATASETS=$(CURDIR)/.no-datasets-in-unit-tests $(PY) -m pytest -q -m unit $(TEST_ARGS)

test: test-fast
	$(BYTECODE) $(PY) -m pytest -q -m integration $(TEST_ARGS)

# the fuzz tier runs 15 examples per test in `make test`; this is the large run (BENCHMARKS.md, Fuzzing)
FUZZ_EXAMPLES ?= 1000
fuzz:
	FER_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest -q tests/test_fuzz.py

features:
	$(PY) -m features.extract $(DATASET) -o $(FEATURES) $(if $(PRESET),--preset $(PRESET)) --detector $(DETECTOR) --jobs $(JOBS)

# a feature table of one shared dataset, e.g. data/jaffe.npz from $(DATASETS)/jaffe
data/%.npz:
	$(PY) -m features.extract $(DATASETS)/$* -o $@ --detector $(DETECTOR) --jobs $(JOBS)

benchmark: $(FEATURES)
	$(PY) -m classifiers.benchmark $(FEATURES) -o $(REPORT) $(if $(MODELS),--models $(MODELS)) $(if $(QUICK),--quick) $(if $(SCHEME),--scheme $(SCHEME)) --seed $(SEED) --jobs $(CLF_JOBS)

model: $(MODEL_TABLES)
	$(PY) -m classifiers.train $(MODEL_TABLES) -o $(DEFAULT_MODEL) --model $(MODEL_NAME) --labels $(MODEL_LABELS) --seed $(SEED) --jobs $(CLF_JOBS) $(MODEL_ARGS)

demo:
	@test -n "$(DEMO_IMAGE)" || { echo "matplotlib's sample photo grace_hopper.jpg not found"; exit 1; }
	$(PY) -m classifiers.predict "$(DEMO_IMAGE)" --annotate out/demo.png

clean:
	rm -rf build *.egg-info .pytest_cache
