# ddval: the two commands of the README (`make reproduce`, `make test`) and a few helpers.
# Every target creates the environment first when it is missing (.venv + node_modules).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.ddval-installed
NODE_STAMP := node_modules/.ddval-installed
PRESET ?= demo
# scratch results of the test suite (never the committed results/ tables)
TEST_RESULTS := $(CURDIR)/.cache/test-results

.PHONY: env reproduce test test-nonroot lab bench contracts clean-test notebooks

env: $(VENV_STAMP) $(NODE_STAMP)

$(VENV_STAMP): requirements.txt constraints.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -r requirements.txt
	$(PY) -m pip install --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name ddval --display-name "Python (ddval)"
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

## the whole pipeline (01 index ... 06 figures) on the embedded demo cohort
reproduce: env
	$(VENV)/bin/ddval reproduce --preset $(PRESET)

## re-execute the committed notebooks in place (01-05 on a fresh scratch results folder, 06 on results/), as nbval checks them
notebooks: env
	bash tools/refresh-notebooks.sh

## the whole test suite: unit, property, integration (chain, IPFS, SLURM) and the notebooks under nbval
test: env
	bash tools/slurm-up.sh
	bash tools/browser-up.sh
	rm -rf $(TEST_RESULTS)
	DDVAL_RESULTS=$(TEST_RESULTS) DDVAL_PROGRESS=off DDVAL_REQUIRE_BROWSER=1 $(PY) -m pytest -p no:cacheprovider \
		--nbval --nbval-current-env --nbval-sanitize-with notebooks/sanitize.cfg notebooks tests

## the test suite for a user without root: a single-user SLURM cluster when SLURM is installed, else every
## test but the SLURM ones (and how many were left out); CI runs `make test` as root
test-nonroot: env
	TEST_RESULTS=$(TEST_RESULTS) PY=$(PY) bash tools/test-nonroot.sh

## JupyterLab on the project's environment, with the `ddval` kernel, at the repository root: README.md,
## results/, docs/ and notebooks/ are one click away. LAB_ARGS adds options (e.g. LAB_ARGS=--port=8890).
## The environment is made only when missing (not when requirements.txt looks newer): a second clone that
## shares .venv must not re-install it and re-point the editable install at itself.
lab:
	test -e $(VENV_STAMP) -a -e $(NODE_STAMP) || $(MAKE) env
	$(VENV)/bin/jupyter lab --allow-root --no-browser --ip 127.0.0.1 --ServerApp.root_dir="$(CURDIR)" $(LAB_ARGS)

## recompile the Solidity contracts with the pinned solc-js (artifacts are committed; a test checks them)
contracts: env
	$(PY) contracts/build.py

## speed/memory benchmarks (tables in benchmarks/)
bench: env
	$(PY) benchmarks/bench_knn_shapley.py
