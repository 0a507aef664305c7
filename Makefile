# Two entry points for a fresh machine (see README):
#   make demo   install everything into .venv, run the node on the bundled sample stream
#   make test   install if needed, run the test suite
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.mlmp-installed
DEMO_ARGS ?=
PYTEST_ARGS ?=

.PHONY: install demo test lint clean

# The stamp depends on setup.py: a changed dependency list (a new extra) reinstalls.
$(STAMP): setup.py setup.cfg package.xml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[ros,bench,test,cluster]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/mlmp-demo $(DEMO_ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/python -m pip install --quiet ruff && $(BIN)/ruff check mlmp_ros test benchmarks launch

clean:
	rm -rf $(VENV) build *.egg-info demo_out
