# ingressd: `make demo` serves the seed's example through a real nginx; `make test` runs the suite.
# Both install what they need first (Debian packages as root, then .venv/ in the checkout).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
APT_PACKAGES := nginx libnginx-mod-http-lua lua-resty-core lua-cjson lua-check wrk openssl curl \
  libnginx-mod-http-headers-more-filter libnginx-mod-stream libnginx-mod-stream-js \
  libnginx-mod-http-modsecurity modsecurity-crs
PYTEST_ARGS ?=

.PHONY: install apt venv demo test test-fast fuzz lint typecheck unit lua bench clean

install: apt venv

# Debian packages: installed only when one is missing (apt-get update first).
apt:
	@missing=""; \
	for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

demo: install
	$(PY) -m ingressd.tools.demo

# ruff (lint and format), the layers of ARCHITECTURE.md (import-linter), luacheck over lua/.
lint: install
	$(VENV)/bin/ruff check ingressd tests benchmarks
	$(VENV)/bin/ruff format --check ingressd tests benchmarks
	$(VENV)/bin/lint-imports
	luacheck --no-color --quiet lua/

typecheck: venv
	$(VENV)/bin/mypy

# Every test (--routing lua, the default); then the end-to-end tests (those that start nginx)
# again with --routing nginx, so both routing modes answer every request test the same way.
unit: install
	$(VENV)/bin/pytest $(PYTEST_ARGS)
	INGRESSD_TEST_ROUTING=nginx $(VENV)/bin/pytest -m nginx $(PYTEST_ARGS)

lua: install
	$(VENV)/bin/pytest tests/test_lua.py $(PYTEST_ARGS)

test: install lint typecheck unit

# The tests that start no nginx (the build, diffing, the pipeline with fakes, the Store, the
# fake API server, the parsers): a quick loop while editing.
test-fast: install
	$(VENV)/bin/pytest -m "not nginx" $(PYTEST_ARGS)

# Hostile objects through the Store, build and render; nginx -t on a sample (tests/test_fuzz.py).
# INGRESSD_FUZZ_OBJECTS (100000) and INGRESSD_FUZZ_SEED (1) change the run.
fuzz: install
	$(PY) -m tests.test_fuzz

bench: install
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .mypy_cache .ruff_cache
