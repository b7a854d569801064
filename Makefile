# Two commands on a fresh machine with Python 3.11 and pip: `make demo` and `make test`.
# Everything the project writes lives under $(PDM_HOME) (default .pdm/ in the repo).

PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin

export PDM_HOME ?= $(CURDIR)/.pdm
export DAGSTER_HOME ?= $(PDM_HOME)/dagster
export UV_PYTHON_DOWNLOADS := never
export UV_CACHE_DIR ?= $(HOME)/.cache/uv
export BENTOML_HOME ?= $(PDM_HOME)/bentoml
export BENTOML_DO_NOT_TRACK := True
PDM_SERVE_PORT ?= 3001

.PHONY: help install demo drift-demo feed mqtt-bridge test lint typecheck format ui mlflow-ui serve rollback bench bench-cmapss bench-serve bench-drift bench-live metrics-exporter rehearse-serve clean

help:  ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.installed: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --python $(PYTHON)
	@touch $@

install: $(VENV)/.installed  ## Create .venv with the locked dependencies (bootstraps uv from PyPI)

demo: install  ## Install, then materialise every asset on the built-in simulator
	$(BIN)/python -m pdm_platform.demo

drift-demo: install  ## After make demo: land batches, watch drift trigger retraining (real daemon)
	$(BIN)/python -m pdm_platform.drift_demo $(ARGS)

feed: install  ## Land simulated batches (make feed ARGS="--batches 5 --bias vibration=0.5")
	$(BIN)/fleet-feed $(ARGS)

mqtt-bridge: install  ## MQTT -> landing zone bridge (make mqtt-bridge ARGS="--host broker --port 1883")
	$(BIN)/fleet-mqtt-bridge $(ARGS)

test: install  ## Lint, then run the whole test suite
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	.ci/validate-manifests --setup  # build the manifest tools before, not inside, the test run
	$(BIN)/pytest -n 2 --dist loadfile --no-loadscope-reorder --durations=25

lint: install  ## ruff check and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install  ## mypy over the packages (settings: [tool.mypy] in pyproject.toml)
	$(BIN)/mypy

format: install  ## Apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

ui: install  ## Dagster UI on http://127.0.0.1:3000 (same state as make demo)
	$(BIN)/python -m pdm_platform.instance
	$(BIN)/dagster dev -h 127.0.0.1 -p 3000

mlflow-ui: install  ## MLflow UI on http://127.0.0.1:5000 over $(PDM_HOME)/mlflow
	mkdir -p $(PDM_HOME)/mlflow
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(PDM_HOME)/mlflow/mlflow.db \
		--default-artifact-root file://$(PDM_HOME)/mlflow/artifacts -h 127.0.0.1 -p 5000 --workers 1

serve: install  ## Serve the latest Bento (else the registry champion) on 127.0.0.1:$(PDM_SERVE_PORT)
	@if $(BIN)/bentoml get pdm-risk-service:latest >/dev/null 2>&1; then \
		echo "serving Bento pdm-risk-service:latest on http://127.0.0.1:$(PDM_SERVE_PORT)"; \
		$(BIN)/fleet-serve pdm-risk-service:latest --host 127.0.0.1 --port $(PDM_SERVE_PORT); \
	else \
		echo "no Bento built yet: serving the registry champion on http://127.0.0.1:$(PDM_SERVE_PORT)"; \
		PDM_MODEL_SOURCE=registry $(BIN)/fleet-serve bento_service.service:FleetRiskService \
			--host 127.0.0.1 --port $(PDM_SERVE_PORT); \
	fi

rollback: install  ## Point the champion alias at VERSION (make rollback VERSION=3)
	@test -n "$(VERSION)" || { echo "usage: make rollback VERSION=<n>"; \
		$(BIN)/python -m pdm_platform.rollback --list; exit 2; }
	$(BIN)/python -m pdm_platform.rollback --to $(VERSION)

bench: install  ## Feature/simulator throughput; results go to BENCHMARKS.md
	$(BIN)/python benchmarks/bench_features.py --update BENCHMARKS.md

bench-cmapss: install  ## Model quality on real C-MAPSS FD001-FD003, 5 seeds incl. the default 42 (BENCHMARKS.md)
	for subset in FD001 FD002 FD003; do \
	  $(BIN)/python benchmarks/bench_cmapss.py --subset $$subset --seeds 42 1 2 3 4 --update BENCHMARKS.md || exit 1; \
	done

bench-serve: install  ## BentoML service vs a FastAPI control on the demo champion (BENCHMARKS.md)
	$(BIN)/python benchmarks/bench_service.py --update BENCHMARKS.md

bench-drift: install  ## Drift detection on simulator streams with the default thresholds (BENCHMARKS.md)
	$(BIN)/python benchmarks/bench_drift.py --update BENCHMARKS.md

rehearse-serve: install  ## After make demo: run the Bento as its Kubernetes pod would (namespaces; needs root)
	$(BIN)/python -m pdm_platform.rehearse_serve $(ARGS)

metrics-exporter: install  ## Live fleet metrics for Prometheus on http://127.0.0.1:9108/metrics
	$(BIN)/python -m pdm_platform.fleet_metrics $(ARGS)

bench-live: install  ## After make demo: live warning quality, scoring rate, landing-to-score latency (BENCHMARKS.md)
	$(BIN)/python benchmarks/bench_live.py --update BENCHMARKS.md

clean:  ## Remove the environment and all state under PDM_HOME
	rm -rf $(VENV) $(TOOLS) $(PDM_HOME)

.PHONY: validate-k8s
validate-k8s:  ## Render the Kubernetes overlays and validate them offline
	.ci/validate-manifests
