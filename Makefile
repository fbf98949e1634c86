# `make demo`: install into .venv (created when missing) and run the captioning demo.
# `make test`: install the test extra into .venv and run the test suite.
# `make notebooks`: execute every tutorial notebook headless (fails on any error).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: demo test test-all notebooks clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

demo: $(VENV)/.installed
	$(BIN)/vlm-keras demo

test: $(VENV)/.installed-test
	$(BIN)/pytest -q -m "not slow and not notebooks"

notebooks: $(VENV)/.installed-test
	$(BIN)/pytest -q -m notebooks tests/test_notebooks.py

test-all: $(VENV)/.installed-test
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) build *.egg-info
