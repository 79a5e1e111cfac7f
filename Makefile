# Two commands for a fresh machine:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test lint bench clean

$(BIN)/casebot: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

install: $(BIN)/casebot

demo: install
	$(BIN)/casebot ask "Warum beendet Twitter die Zusammenarbeit mit Mitto?"
	@echo
	$(BIN)/casebot ask "Which US senator did Twitter inform that it is dropping Mitto?"

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) var .cache .mypy_cache .ruff_cache .pytest_cache
