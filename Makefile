# firehose: build, test, demo, bench.  Every target creates .venv when it is missing.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed

.PHONY: all compile debug test demo bench bench-compare clean distclean

all: compile

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# Build requirements first, then the package in editable mode with its test extras.
$(STAMP): $(PY) pyproject.toml setup.py
	$(PIP) install -q "setuptools>=77" wheel "Cython>=3.0" "numpy>=1.26" "pyarrow>=14"
	$(PIP) install -q --no-build-isolation -e '.[test]'
	touch $(STAMP)

# Re-cythonize and rebuild the extension in place whenever _core.pyx (or its includes) change.
compile: $(STAMP)
	$(PY) setup.py -q build_ext --inplace

debug: $(STAMP)
	FIREHOSE_DEBUG=1 FIREHOSE_FORCE_CYTHON=1 $(PY) setup.py -q build_ext --inplace

test: compile
	$(PY) -m pytest -q tests

demo: compile
	$(PY) -m firehose.cli demo

bench: compile
	$(PIP) install -q -e '.[bench]' --no-build-isolation
	$(PY) -m pytest bench --benchmark-only -q

bench-compare: compile
	$(PIP) install -q -e '.[bench]' --no-build-isolation
	$(PY) bench/compare/run.py --mb 300

clean:
	rm -rf build src/firehose/_core.c src/firehose/*.so src/firehose/*.html .pytest_cache .benchmarks

distclean: clean
	rm -rf $(VENV) *.egg-info src/*.egg-info
