# Set-up and the two commands the README shows: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= /tmp/stfusion_demo
# Test processes (pytest-xdist); a test file stays in one process, so its module fixtures run once.
# One more than the 2 cores of the CI machine: some tests wait (two-worker heartbeats, a Dask
# cluster, kill -9 and restart), and a third process keeps both cores busy meanwhile (measured
# with 818 tests: 5 min 22 s with 3, 6 min 0 s with 2, 5 min 36 s with 4).
PYTEST_WORKERS ?= 3

.PHONY: venv browser test test-fast lint demo clean

$(STAMP): requirements.txt requirements-dev.txt requirements-dask.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

# Headless Chromium from Debian's packages, for the tests that open the run report
# (tests/browser.py); installed only where it is missing. Needs apt-get (root, or sudo).
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	test -x $(CHROMIUM) || ($(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium)
	$(CHROMIUM) --version

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# One test file per process, in the order tests/conftest.py collects them (the files with the
# most slow tests first; xdist would otherwise reorder files by their number of tests).
PYTEST := $(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder

test: lint
	$(PYTEST)

# The inner loop: everything but the end-to-end runs marked slow (CI runs `make test`).
test-fast: lint
	$(PYTEST) -m "not slow"

demo: $(STAMP)
	$(PY) -m pipelines.demo --workdir=$(DEMO_DIR)

clean:
	rm -rf $(VENV) .pytest_cache
