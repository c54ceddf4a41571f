# Two commands from a fresh clone: `make up` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: up demo test unit install console chromium bench asyncapi clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

# The staff console (console/): Vue 3 + Element Plus built by Vite into console/dist. Debian's
# nodejs/npm are installed when missing; `npm ci` installs exactly the committed lockfile.
# A stamp newer than every source file skips the npm steps.
CONSOLE_STAMP := console/dist/.stamp
CONSOLE_SOURCES := $(shell find console/src console/scripts -type f 2>/dev/null) console/index.html \
	console/vite.config.js console/package.json console/package-lock.json

$(CONSOLE_STAMP): $(CONSOLE_SOURCES)
	@command -v npm >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq nodejs npm >/dev/null; }
	cd console && npm ci --no-audit --no-fund --loglevel=error && npm run build
	touch $(CONSOLE_STAMP)

console: $(CONSOLE_STAMP)

install: $(STAMP) $(CONSOLE_STAMP)

up: install
	$(BIN)/estatedesk up $(ARGS)

demo: install
	$(BIN)/estatedesk up --demo $(ARGS)

# Debian's Chromium for the browser tests (Playwright cannot download its own here), a
# CJK font so the Chinese renders in screenshots, and Debian's nginx for the test of the
# production routing in deploy/nginx/.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
chromium:
	@if ! command -v chromium >/dev/null 2>&1 || ! fc-list 2>/dev/null | grep -qi wenquanyi \
	  || ! [ -x /usr/sbin/nginx ]; then \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium fonts-wqy-zenhei nginx >/dev/null; fi

# Two pytest-xdist workers, a test file's tests together on one (its module fixtures, its
# order); each worker has its own session stack.
test: install chromium
	$(BIN)/python -m pytest -q -p no:cacheprovider -rfE --durations=25 -n 2 --dist loadfile $(ARGS)

unit: install
	$(BIN)/python -m pytest -q tests/unit $(ARGS)

bench: install
	$(BIN)/python bench/pipeline.py $(ARGS)
	$(BIN)/python bench/statements.py
	$(BIN)/python bench/consumer.py
	$(BIN)/python bench/rebuild.py
	$(BIN)/python bench/analytics_report.py

asyncapi: install
	$(BIN)/estatedesk asyncapi

clean:
	rm -rf $(VENV) .estatedesk
