# Two entry points for a fresh machine (see README):
#   make demo   install everything into .venv, run the node on the bundled sample stream
#   make test   install if needed, run the test suite on ROS 2 Kilted (Python 3.11), build the
#               documentation site strictly, then the node, core and demo tests on ROS 2 Jazzy
#               (Python 3.12, a second venv: .venv-jazzy)
#   make docs   build the documentation site into site/; make docs-serve serves it on 127.0.0.1
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.mlmp-installed
DEMO_ARGS ?=
PYTEST_ARGS ?=
# The Kilted pass runs in random order (pytest-random-order: modules shuffled, tests shuffled
# within each module). The seed is printed: rerun a failure with `make test-kilted TEST_SEED=N`;
# `RANDOM_ORDER=` keeps the file order.
ifndef TEST_SEED
TEST_SEED := $(shell od -An -N2 -tu2 /dev/urandom | tr -d ' ')
endif
RANDOM_ORDER ?= -p random_order --random-order-bucket=module --random-order-seed=$(TEST_SEED)
# Jazzy leg: the first Python 3.12 found (PATH, pyenv, /usr/bin).
PYTHON_JAZZY ?= $(shell for p in python3.12 $$HOME/.pyenv/versions/3.12*/bin/python3.12 /usr/bin/python3.12; do \
	$$p -c 'import sys; assert sys.version_info[:2] == (3, 12)' >/dev/null 2>&1 && { echo $$p; break; }; done)
VENV_JAZZY ?= .venv-jazzy
JAZZY_STAMP := $(VENV_JAZZY)/.mlmp-installed
JAZZY_TESTS ?= test/ros test/core test/demo

.PHONY: install install-jazzy demo test test-kilted test-jazzy test-avx2-only docs docs-check docs-serve lint clean

# The stamp depends on setup.py: a changed dependency list (a new extra) reinstalls.
$(STAMP): setup.py setup.cfg package.xml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[ros,bench,test,cluster,docs]'
	touch $(STAMP)

install: $(STAMP)

$(JAZZY_STAMP): setup.py setup.cfg package.xml
	@test -n "$(PYTHON_JAZZY)" || { echo "make test-jazzy: no Python 3.12 found (set PYTHON_JAZZY=/path/to/python3.12)" >&2; exit 1; }
	$(PYTHON_JAZZY) -m venv $(VENV_JAZZY)
	$(VENV_JAZZY)/bin/python -m pip install --quiet --upgrade pip
	$(VENV_JAZZY)/bin/python -m pip install --quiet -e '.[jazzy,bench,test]'
	touch $(JAZZY_STAMP)

install-jazzy: $(JAZZY_STAMP)

demo: $(STAMP)
	$(BIN)/mlmp-demo $(DEMO_ARGS)

test: test-kilted docs-check test-jazzy

test-kilted: $(STAMP)
	@echo "make test-kilted: test order seed $(TEST_SEED) (same order again: make test-kilted TEST_SEED=$(TEST_SEED))"
	$(BIN)/python -m pytest -q $(RANDOM_ORDER) $(PYTEST_ARGS)

test-jazzy: $(JAZZY_STAMP)
	$(VENV_JAZZY)/bin/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS) $(JAZZY_TESTS)

# The documentation site (mkdocs.yml, sources in docs/). --strict: a broken link or anchor, a page
# missing from the navigation or a reference to a missing symbol fails the build. The parameter
# tables are generated from the settings' declarations while it builds (docs/tools/hooks.py).
DOCS_PORT ?= 8000
MKDOCS := NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs

docs: $(STAMP)
	$(MKDOCS) build --strict --site-dir site

docs-check: $(STAMP)
	$(MKDOCS) build --strict --site-dir $(CURDIR)/build/docs-check

docs-serve: $(STAMP)
	$(MKDOCS) serve --strict --dev-addr 127.0.0.1:$(DOCS_PORT)

# The Kilted pass as on an AVX2-only CPU (not part of `make test`): torch's AVX2 kernels
# (ATEN_CPU_CAPABILITY) and no native bf16 reported (test/tools/avx2_only/sitecustomize.py),
# so `precision: auto` resolves to fp32 as it would there.
test-avx2-only: $(STAMP)
	ATEN_CPU_CAPABILITY=avx2 PYTHONPATH=$(CURDIR)/test/tools/avx2_only $(MAKE) test-kilted

lint: $(STAMP)
	$(BIN)/python -m pip install --quiet ruff && $(BIN)/ruff check mlmp_ros test benchmarks launch

clean:
	rm -rf $(VENV) $(VENV_JAZZY) build *.egg-info demo_out site
