# Two set-up commands: `make run` (install and serve the app) and `make test`
# (install everything the tests need, then run them). Both work offline on a CPU-only
# machine that reaches only the package registries.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LS_VENV ?= .venv-labelstudio
TF4_VENV ?= .venv-transformers4
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PIP := $(BIN)/python -m pip install --disable-pip-version-check -q
ARGS ?=

.PHONY: run test bench install install-dev chromium labelstudio postgresql transformers4 clean

run: install
	$(BIN)/python app.py $(ARGS)

# The tests run on up to 4 workers (pytest-xdist), a file at a time each: most of them wait on a
# browser, a server or a subprocess, so even 2 cores finish in about half the time.
test: install-dev chromium labelstudio postgresql transformers4
	$(BIN)/python -m pytest -n auto --maxprocesses 4 --dist loadfile $(ARGS)

bench: install-dev postgresql labelstudio
	$(BIN)/python -m tests.perf.run_all $(ARGS)

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(PIP) -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed
	$(PIP) -r requirements-dev.txt
	touch $@

# Debian's Chromium for the browser tests (Playwright drives it; it cannot download its own).
chromium:
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium; }

# Debian's PostgreSQL server binaries (initdb, pg_ctl): the queue tests start a throw-away
# cluster of their own on 127.0.0.1; nothing is configured or started system-wide.
# After `chromium`: two apt-get runs at once (make -j) would fight over dpkg's lock.
postgresql: chromium
	@command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
		{ $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q postgresql; }

# A real Label Studio server for the round-trip tests, in its own virtual environment so its
# pinned Django stack never mixes with the app's dependencies.
labelstudio: $(LS_VENV)/.installed
$(LS_VENV)/.installed:
	$(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/python -m pip install --disable-pip-version-check -q label-studio==1.23.2
	touch $@

# transformers 4.37, the first release with both LLaVA and SigLIP, in its own environment: the
# test that merged models load with older readers too (tests/test_humanvlm_training.py). CPU torch.
transformers4: $(TF4_VENV)/.installed
$(TF4_VENV)/.installed:
	$(PYTHON) -m venv $(TF4_VENV)
	$(TF4_VENV)/bin/python -m pip install --disable-pip-version-check -q torch==2.13.0 transformers==4.37.2 \
		tokenizers==0.15.2 safetensors==0.8.0 numpy==1.26.4 pillow==12.3.0
	touch $@

clean:
	rm -rf $(VENV) $(LS_VENV) $(TF4_VENV) .pytest_cache test-artifacts
