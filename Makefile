# Everything sets itself up from the registries: a fresh clone needs Python 3.11, Node 20, npm.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WORKSPACE ?= workspace
PORT ?= 8888

.PHONY: venv lab test lint torture bench clean chromium

$(STAMP): pyproject.toml labextension/package.json
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test,lab,data]"
	touch $(STAMP)

venv: $(STAMP)

# npm writes node_modules/.package-lock.json on every install: newer than the lock file
# once node_modules matches it.
NODE_MODULES := labextension/node_modules/.package-lock.json
$(NODE_MODULES): labextension/package-lock.json
	cd labextension && npm ci --no-audit --no-fund

# Debian's chromium for the browser tests (Playwright never downloads its own browsers),
# and Debian's nginx for tests/test_nginx.py (run unprivileged by the test itself).
chromium:
	command -v chromium >/dev/null && test -x /usr/sbin/nginx || \
	(apt-get update && apt-get install -y chromium nginx-light)

lab: venv
	mkdir -p $(WORKSPACE)
	$(BIN)/jupyter lab --notebook-dir=$(WORKSPACE) --port=$(PORT) $(if $(filter 0,$(shell id -u)),--allow-root,)

# ruff; prettier --check, stylelint and eslint (labextension's lint:check).
lint: venv $(NODE_MODULES)
	$(BIN)/ruff check jupyter_tus tests benchmarks
	$(BIN)/ruff format --check jupyter_tus tests benchmarks
	cd labextension && npm run lint:check

test: lint chromium
	cd labextension && npm test
	$(BIN)/python -m pytest -q -ra

# Upload speed side by side (not part of `make test`): sets up its peers itself
# (benchmarks/peers, benchmarks/node_modules), writes benchmarks/results/.
# e.g. make bench BENCH_ARGS="--size 256M --no-browser" S3_BENCH_ARGS="--size 256M"
bench: venv
	$(BIN)/python benchmarks/bench.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/s3bench.py $(S3_BENCH_ARGS)

# The reliability tests, longer: TUS_SEED (default: a fresh one, printed), TUS_TORTURE_KILLS,
# TUS_FUZZ_EXAMPLES, TUS_LOAD_UPLOADS, TUS_LOAD_MIB, TUS_MODEL_EXAMPLES, TUS_MODEL_STEPS.
# See docs/reliability.md.
torture: venv
	TUS_SEED=$${TUS_SEED:-$$(date +%s)} TUS_TORTURE_KILLS=$${TUS_TORTURE_KILLS:-400} \
	TUS_FUZZ_EXAMPLES=$${TUS_FUZZ_EXAMPLES:-4000} TUS_LOAD_UPLOADS=$${TUS_LOAD_UPLOADS:-64} \
	TUS_MODEL_EXAMPLES=$${TUS_MODEL_EXAMPLES:-60} TUS_MODEL_STEPS=$${TUS_MODEL_STEPS:-40} \
	$(BIN)/python -m pytest -q -ra -p no:logging -o timeout=0 tests/reliability

clean:
	rm -rf $(VENV) build dist *.egg-info
