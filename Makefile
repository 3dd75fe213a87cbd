# One place that knows how to set up this project on a fresh machine.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
TORCH   ?= torch==2.13.0
STAMP   := $(VENV)/.installed

.PHONY: setup test test-all demo fit-demo schema docs clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@command -v dot >/dev/null 2>&1 || { echo "installing graphviz (dot)"; \
	  (apt-get update -qq && apt-get install -y -qq graphviz) >/dev/null 2>&1 || \
	  echo "warning: could not install graphviz; rendering to images will be unavailable"; }
	@command -v chromium >/dev/null 2>&1 || { echo "installing chromium (browser tests of tnnspec view)"; \
	  (apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium) >/dev/null 2>&1 || \
	  echo "warning: could not install chromium; the browser tests of tnnspec view will be skipped"; }
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { echo "installing postgresql (server for the search storage tests)"; \
	  (apt-get update -qq && apt-get install -y -qq postgresql) >/dev/null 2>&1 || \
	  echo "warning: could not install postgresql; the PostgreSQL test of tnnspec search will be skipped"; }
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -q -m "not slow and not gpu"

test-all: setup
	$(BIN)/python -m pytest -q

demo: setup
	$(BIN)/python tools/occlusion_demo.py --out out/demo

fit-demo: setup
	$(BIN)/python tools/fit_demo.py --out out/fit-demo

# the committed schema and docs describe the built-in cells and ops, whatever plugins are installed
schema: setup
	TNNSPEC_DISABLE_PLUGINS=1 $(BIN)/tnnspec schema -o schemas/tnnspec.schema.json

docs: setup
	TNNSPEC_DISABLE_PLUGINS=1 $(BIN)/tnnspec docs --only tnnspec --update docs/spec.md docs/cells.md docs/learning_rules.md

clean:
	rm -rf $(VENV) build *.egg-info
