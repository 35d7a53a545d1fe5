# The two commands of the README: `make serve` and `make test`.
# Both create the virtual environment in .venv on first use.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: serve test lint clean dashboard openapi

# The dashboard (dashboard/, React + Vite) is built into the package, git-ignored, when the build is missing or
# older than its sources. Without npm, `make serve` still starts the collector (it logs that the dashboard is
# not built).
NPM ?= npm
DASHBOARD_BUILD := collector/query/ui/index.html
DASHBOARD_SOURCES := $(shell find dashboard/src -type f ! -name '*.gen.ts' ! -name '*.test.*' 2>/dev/null) \
	dashboard/index.html dashboard/package.json dashboard/vite.config.ts dashboard/tsconfig.json dashboard/openapi.json
HAVE_NPM := $(shell command -v $(NPM) 2>/dev/null)

dashboard/node_modules/.package-lock.json: dashboard/package-lock.json
	cd dashboard && $(NPM) ci --no-audit --no-fund --loglevel=error
	touch $@

$(DASHBOARD_BUILD): $(DASHBOARD_SOURCES) dashboard/node_modules/.package-lock.json
	cd dashboard && $(NPM) run --silent build

dashboard: $(DASHBOARD_BUILD)

# The OpenAPI snapshot the dashboard's types are generated from (tests/query/test_openapi_snapshot.py checks it).
openapi: $(BIN)/.installed-runtime
	$(BIN)/python -m collector.query.openapi > dashboard/openapi.json

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Two stamps in the one environment: `make serve` installs the runtime dependencies only; `make test` adds the
# test extras (the suite's clients and tools, ruff, mypy and the type stubs).
$(BIN)/.installed-runtime: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(BIN)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

serve: $(BIN)/.installed-runtime $(if $(HAVE_NPM),$(DASHBOARD_BUILD))
	$(if $(HAVE_NPM),,@echo "npm is not installed: serving without the dashboard (install Node.js 20+ to build it)")
	$(BIN)/genai-collector serve $(ARGS)

# Lint, format and type checks (configured in pyproject.toml) run before the tests.
LINTED := collector bench tests
lint: $(BIN)/.installed
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/mypy collector

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache .mypy_cache collector/query/ui dashboard/node_modules
