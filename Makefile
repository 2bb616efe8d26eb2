# mlcycle: `make run` sets up and runs the whole pipeline; `make test` sets up and tests.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
# One tracking store for every step, absolute so runs from a git checkout land here too.
# An MLFLOW_TRACKING_URI already set in the environment wins.
export MLFLOW_TRACKING_URI ?= sqlite:///$(CURDIR)/mlflow.db
export PATH := $(BIN):$(PATH)
PORT ?= 5001
MODEL_NAME ?= loan-amount
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

# Byte code is written into .venv as modules are first imported, even where the machine
# sets PYTHONDONTWRITEBYTECODE (without it every process recompiled MLflow: `import mlflow`
# 5.4 s instead of 1.9 s, benchmarks/RESULTS.md). Compiling all 32,815 files at install
# instead (`uv sync --compile-bytecode`) took 20 s of every fresh environment; the
# commands here import a fraction of them.
unexport PYTHONDONTWRITEBYTECODE

# uv.lock is the one lock: `uv sync --locked` installs exactly what it names (and removes
# what it does not), and stops with "needs to be updated" when pyproject.toml changed
# without `uv lock`. The project itself is not installed: it is imported from this folder.
UV_VERSION := 0.13.9
$(VENV)/.installed: pyproject.toml uv.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(BIN)/uv || $(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	UV_PROJECT_ENVIRONMENT=$(VENV) $(BIN)/uv sync --quiet --locked --extra dev --python $(BIN)/python
	@touch $@

.PHONY: venv
venv: $(VENV)/.installed ## create .venv exactly as uv.lock says (fast when it is up to date)

.PHONY: run
run: venv ## run the whole pipeline (entry point main) on the bundled data
	mlflow run . --env-manager local -e main
	@$(BIN)/python -m mlcycle.summary

.PHONY: watch
# The scheduled command of the production loop (README, "Deciding when to retrain"):
# hourly from cron, `0 * * * * cd /path/to/mlcycle && make watch`.
POLICY ?= auto
ALERT_URL ?=
watch: venv ## decide whether MODEL_NAME needs retraining (POLICY, ALERT_URL), and retrain it
	mlflow run . --env-manager local -e watch -P model_name=$(MODEL_NAME) -P policy=$(POLICY) \
		-P alert_url=$(ALERT_URL)

.PHONY: system-deps
system-deps: ## install what the integration tests start: Chromium, PostgreSQL, Java (Debian)
	@bash scripts/system-deps.sh

.PHONY: test
# Two workers, one per core, a test file each (module fixtures stay shared), the longest
# files first (tests/conftest.py's order, kept by --no-loadscope-reorder); a test that
# hangs (a server that never answers) fails after 30 minutes instead of stalling CI; the 25
# slowest tests are listed at the end (their table is in benchmarks/RESULTS.md).
# One thread per numerical library in each test process: the two workers keep both cores
# busy already, and nested pools (OpenMP, OpenBLAS, TensorFlow's) only spin against them.
TEST_THREADS := OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 \
	TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1
test: venv system-deps ## run the whole test suite
	$(TEST_THREADS) $(BIN)/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder --timeout 1800 --durations=25 $(PYTEST_ARGS)

.PHONY: unit
# Under a minute: the unit tests that train real networks or run Evidently are marked
# integration and left to `make test`; the rest on two workers, one per core.
unit: venv ## run the unit tests only
	$(BIN)/python -m pytest tests/unit -m "not integration" -n 2 $(PYTEST_ARGS)

.PHONY: lint
lint: venv ## ruff check and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

.PHONY: serve
serve: venv ## serve the champion on http://127.0.0.1:$(PORT)
	mlflow models serve -m models:/$(MODEL_NAME)@champion --env-manager local --host 127.0.0.1 --port $(PORT)

.PHONY: bench
bench: venv ## run the benchmarks of benchmarks/ (see benchmarks/RESULTS.md)
	@for script in benchmarks/bench_*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

.PHONY: replay
# A few trials and epochs a batch, so the whole stream replays in minutes.
REPLAY_ARGS ?= --n-trials 2 --epochs 30
replay: venv ## run main batch after batch over data/stream/, then print the last report
	$(BIN)/python -m mlcycle.replay $(REPLAY_ARGS)

.PHONY: replay-production
# As production runs: each batch scored without labels, labels back LABEL_DELAY batches later.
LABEL_DELAY ?= 1
replay-production: venv ## the stream as production: score unlabelled, feedback LABEL_DELAY batches later, main
	$(BIN)/python -m mlcycle.replay --production --label-delay $(LABEL_DELAY) $(REPLAY_ARGS)

.PHONY: data
data: venv ## regenerate data/df_old.csv, data/df_new.csv and data/stream/ (byte for byte)
	$(BIN)/python -m mlcycle.ingest.datagen

.PHONY: ui
ui: venv ## open the MLflow UI on the project's store
	mlflow ui --backend-store-uri $(MLFLOW_TRACKING_URI) --host 127.0.0.1 --port 5000

# The UIs of Optuna and Evidently on what optimize and monitor wrote; loopback only, as
# `make ui`: neither has a login. STORAGE as optimize's storage parameter (empty: the
# project's journal; the team's: STORAGE=$$OPTUNA_STORAGE); EVIDENTLY_WORKSPACE as
# monitor's evidently_workspace. DO_NOT_TRACK keeps Evidently's server from reporting usage.
STORAGE ?=
DASHBOARD_PORT ?= 8080
EVIDENTLY_WORKSPACE ?= $(CURDIR)/.mlcycle/evidently
EVIDENTLY_PORT ?= 8000

.PHONY: dashboard
dashboard: venv ## optuna-dashboard on optimize's studies: 127.0.0.1:8080 (STORAGE=, DASHBOARD_PORT=)
	$(BIN)/python -m mlcycle.dashboard --storage '$(STORAGE)' --port $(DASHBOARD_PORT)

.PHONY: evidently-ui
evidently-ui: venv ## Evidently's UI on monitor's snapshots: 127.0.0.1:8000 (EVIDENTLY_PORT=)
	DO_NOT_TRACK=1 $(BIN)/evidently ui --workspace '$(EVIDENTLY_WORKSPACE)' --host 127.0.0.1 --port $(EVIDENTLY_PORT)

.PHONY: clean
clean: ## remove generated state (store, reports), keep .venv
	rm -rf mlflow.db mlruns mlartifacts .mlcycle reports/loan-amount .pytest_cache

# Team setup (README, "Team setup"): PostgreSQL + an authenticated tracking server, state
# in TEAM_DIR. Then `source $(TEAM_DIR)/team.env` and every step logs to the server.
TEAM_DIR ?= $(CURDIR)/.mlcycle/team
# make team-server ALERT_WEBHOOK_URL=https://...: MLflow posts every alias move there
ALERT_WEBHOOK_URL ?=

.PHONY: team-server
team-server: venv system-deps ## start PostgreSQL and the authenticated mlflow server in TEAM_DIR
	@ALERT_WEBHOOK_URL="$(ALERT_WEBHOOK_URL)" bash scripts/team-server.sh start $(TEAM_DIR)

.PHONY: team-stop
team-stop: ## stop what `make team-server` started (its data stays in TEAM_DIR)
	@bash scripts/team-server.sh stop $(TEAM_DIR)
