# Two commands for a fresh machine:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check

# `make demo` keeps its index in ./var (removed by `make clean`); an installed casebot defaults to
# $XDG_STATE_HOME/casebot. Set CASEBOT_DATA_DIR to choose another place.
DEMO_DATA_DIR ?= var

.PHONY: install install-dev demo test lint lint-deploy bench clean

$(BIN)/python:
	@echo "==> creating the virtualenv $(VENV)"
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# Runtime only: what `make demo` and a newsroom install need.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	@echo "==> installing casebot and its runtime dependencies (about a minute)"
	$(PIP) install --quiet -e .
	touch $@

# Runtime plus test, lint and optional-backend packages. llama-cpp-python is compiled from
# source here (about 7 minutes on two idle cores); pip's progress is shown so it does not look hung.
$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	@echo "==> installing casebot with its test, lint and optional packages"
	@echo "==> llama-cpp-python is compiled from source on the first run: about 7 minutes on 2 idle cores"
	$(PIP) install --progress-bar on -e ".[dev]"
	@echo "==> dev install done"
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: export CASEBOT_DATA_DIR ?= $(DEMO_DATA_DIR)
demo: install
	$(BIN)/casebot ask "Warum beendet Twitter die Zusammenarbeit mit Mitto?"
	@echo
	$(BIN)/casebot ask "Which US senator did Twitter inform that it is dropping Mitto?"

lint: install-dev
	@echo "==> ruff"
	$(BIN)/ruff check .
	@echo "==> mypy"
	$(BIN)/mypy

# The Dockerfile (hadolint, from the dev extra) and the systemd unit (systemd-analyze, if installed).
lint-deploy: install-dev
	$(BIN)/hadolint Dockerfile
	@if command -v systemd-analyze >/dev/null; then \
		sed 's|/opt/casebot/bin/casebot|/bin/true|' deploy/casebot.service > $(VENV)/casebot.service \
		&& systemd-analyze verify $(VENV)/casebot.service && echo "deploy/casebot.service: ok"; \
	else echo "systemd-analyze not installed: deploy/casebot.service not checked"; fi

test: lint
	@echo "==> pytest (the whole suite, about 15 minutes on a 2-core machine)"
	$(BIN)/python -m pytest

bench: install-dev
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) var .cache .mypy_cache .ruff_cache .pytest_cache
