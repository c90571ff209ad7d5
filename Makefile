# WarmWindow: two commands on a fresh machine.
#   make demo   run the product: local broker, server with SQLite, the 12 Qingpu windows simulated
#   make test   lint, type-check and run every test (needs Mosquitto and PostgreSQL, see README)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/pip install -q --disable-pip-version-check -e ".[agent,server,dev]"
	touch $@

demo: $(BIN)/.installed
	$(BIN)/warmwindow demo

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check agent server tests bench models
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

bench: $(BIN)/.installed
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
