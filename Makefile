# The two commands of the README:
#   make demo   run the flagship example DAG against the bundled emulator (or the real service)
#   make test   lint, type checks and the whole test suite (incl. a real Airflow deployment)
PYTHON ?= python3
VENV ?= .venv
AIRFLOW_VERSION ?= 3.3.2
BIN := $(VENV)/bin

.PHONY: venv test lint typecheck pytest test-under-load demo ui bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# uv makes the Airflow install take seconds instead of minutes; plain pip is the fallback.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	($(BIN)/pip install -q uv && $(BIN)/uv pip install -q --python $(BIN)/python \
	    "apache-airflow==$(AIRFLOW_VERSION)" -e ".[test]") \
	  || $(BIN)/pip install -q "apache-airflow==$(AIRFLOW_VERSION)" -e ".[test]"
	touch $@

venv: $(VENV)/.installed

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy

pytest: venv
	bash scripts/ensure_postgres.sh
	bash scripts/ensure_chromium.sh >/dev/null
	$(BIN)/python -m pytest -q

test: lint typecheck pytest

# The suite with every core kept busy by bounded CPU hogs (how a busy laptop or CI runner runs it).
test-under-load: venv
	bash scripts/ensure_postgres.sh
	$(BIN)/python scripts/under_load.py -- $(BIN)/python -m pytest -q

demo: venv
	$(BIN)/python scripts/demo.py

# Airflow's UI on 127.0.0.1 with the emulator, the example DAGs and the media view (Ctrl-C stops it).
ui: venv
	$(BIN)/python scripts/ui.py

bench: venv
	$(BIN)/uv pip install -q --python $(BIN)/python ".[bench]"
	$(BIN)/python benchmarks/parse_overhead.py
	$(BIN)/python benchmarks/triggerer_capacity.py

clean:
	rm -rf $(VENV) .demo .e2e .ui
