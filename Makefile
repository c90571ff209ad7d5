# WarmWindow: two commands on a fresh machine.
#   make demo   run the product: local broker, server with SQLite, the 12 Qingpu windows simulated
#   make test   lint, type-check and run every test (needs Mosquitto and PostgreSQL, see README)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench clean deps models

# System packages the tests drive for real: a broker, a browser and the CJK fonts its
# pages and screenshots render Chinese with; the Pango libraries WeasyPrint renders the
# reports' PDFs with, and poppler's tools the tests read them back with (Debian names).
deps:
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	{ command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ]; } || missing="$$missing mosquitto"; \
	{ command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ]; } || missing="$$missing nats-server"; \
	command -v shellcheck >/dev/null || missing="$$missing shellcheck"; \
	for pkg in fonts-noto-cjk poppler-utils libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0; do \
	  dpkg -s $$pkg >/dev/null 2>&1 || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "missing system packages:$$missing (sudo apt install$$missing)"; exit 1; fi; \
	fi

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
	$(BIN)/lint-imports

# Two workers, each taking whole test files (module fixtures such as the access matrix's
# world are built once); most tests wait on brokers, servers and Chromium.
test: deps lint
	$(BIN)/pytest -n 2 --dist loadfile

bench: $(BIN)/.installed
	$(BIN)/python -m bench

# Rebuild the ONNX models (build tools need numpy<2: a venv of their own).
models:
	$(PYTHON) -m venv .venv-build
	.venv-build/bin/pip install -q -r models/requirements-build.txt
	PYTHONPATH=. .venv-build/bin/python -m models.build

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache

# The window agent's Debian packages (docs/packaging.md):
# dist/warmwindow-agent_<version>_{arm64,amd64}.deb. deb-check (root, about 20 minutes)
# also installs, upgrades, removes and purges them in bookworm roots; not part of `make test`.
.PHONY: deb deb-check
DEB_ROOTS ?= /var/tmp/ww-deb
deb: $(BIN)/.installed
	deploy/deb/build-deb.sh

deb-check: deb
	deploy/deb/make-root.sh amd64 $(DEB_ROOTS)/amd64
	deploy/deb/make-root.sh arm64 $(DEB_ROOTS)/arm64
	deploy/deb/test-install.sh $(DEB_ROOTS)/amd64
	deploy/deb/test-install.sh $(DEB_ROOTS)/arm64

# The window agent on arm64 without a Pi: an emulated Debian bookworm arm64 root, the
# agent from PyPI's aarch64 wheels, its tests, the smile model against x86, the agent
# against a broker here (deploy/pi/pi-check.sh, docs/pi-check.md). Needs root; about
# 20 min here; not part of `make test`. PI_CHECK_ARGS="--fresh" rebuilds the root.
.PHONY: pi-check
pi-check: $(BIN)/.installed
	deploy/pi/pi-check.sh $(PI_CHECK_ARGS)
