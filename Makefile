# Two commands from a fresh clone: `make up` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: up demo test unit install chromium bench asyncapi clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

up: install
	$(BIN)/estatedesk up $(ARGS)

demo: install
	$(BIN)/estatedesk up --demo $(ARGS)

# Debian's Chromium for the browser tests (Playwright cannot download its own here).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; fi; }

test: install chromium
	$(BIN)/python -m pytest -q -p no:cacheprovider $(ARGS)

unit: install
	$(BIN)/python -m pytest -q tests/unit $(ARGS)

bench: install
	$(BIN)/python bench/pipeline.py $(ARGS)

asyncapi: install
	$(BIN)/estatedesk asyncapi

clean:
	rm -rf $(VENV) .estatedesk
