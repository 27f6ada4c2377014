# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
REQ_HASH := $(shell cat requirements.txt requirements/*.txt | sha256sum | cut -c1-16)
RUN_STAMP := $(VENV)/.run-$(REQ_HASH)
TEST_STAMP := $(VENV)/.test-$(REQ_HASH)

.PHONY: run test lint bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade "pip>=24"

# Re-installs only when a requirements file changed (the stamp names their hash).
$(RUN_STAMP): | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(TEST_STAMP): $(RUN_STAMP)
	$(BIN)/pip install -q -r requirements/test.txt
	touch $@

run: $(RUN_STAMP)
	$(BIN)/python -m config.launcher

# Browser tests drive Debian's chromium (Playwright cannot download browsers here).
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "The browser tests need Debian's chromium: sudo apt-get install chromium"; exit 1; fi

test: $(TEST_STAMP) $(CHROMIUM)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(TEST_STAMP)
	$(BIN)/python -m bench.indexing
