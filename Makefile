# The two commands of the README:
#   make demo   run the flagship example DAG against the bundled emulator (or the real service)
#   make test   lint, type checks, the docs build and the whole test suite (incl. a real Airflow
#               deployment) on the newest Airflow, then on the older lines it supports (3.2, and the
#               floor 3.1), and the non-e2e tests on Python 3.13
PYTHON ?= python3
VENV ?= .venv
AIRFLOW_VERSION ?= 3.3.2
BIN := $(VENV)/bin

.PHONY: venv test lint typecheck docs pytest pytest-3.1 pytest-3.2 pytest-py3.13 test-under-load demo ui bench clean

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

# The Sphinx tree under docs/: warnings are errors (-W), and -n (nitpicky) makes every internal
# reference that does not resolve a warning: a page, a heading anchor, an included example's
# [START]/[END] marker or an included file that is missing fails the build. The linkcheck builder then
# checks the remaining links; docs/conf.py ignores every http(s) link, so nothing leaves the machine.
$(VENV)/.docs-installed: pyproject.toml | $(VENV)/.installed
	$(BIN)/uv pip install -q --python $(BIN)/python "apache-airflow==$(AIRFLOW_VERSION)" -e ".[docs]"
	touch $@

docs: $(VENV)/.docs-installed
	rm -rf docs/_build
	$(BIN)/sphinx-build -q -W --keep-going -n -b html docs docs/_build/html
	$(BIN)/sphinx-build -q -W --keep-going -n -b linkcheck docs docs/_build/linkcheck

# The CeleryExecutor stack of the distributed e2e test (tests/e2e/test_distributed.py), pinned for 3.3.
$(VENV)/.celery-installed: constraints/celery-airflow-3.3.txt | $(VENV)/.installed
	$(BIN)/uv pip install -q --python $(BIN)/python -c constraints/celery-airflow-3.3.txt apache-airflow-providers-celery \
	  || $(BIN)/pip install -q -c constraints/celery-airflow-3.3.txt apache-airflow-providers-celery
	touch $@

# The newest Airflow: the non-e2e tests two at a time (pytest-xdist), then the e2e tests alone.
pytest: venv $(VENV)/.celery-installed
	bash scripts/ensure_postgres.sh
	bash scripts/ensure_chromium.sh >/dev/null
	bash scripts/ensure_redis.sh >/dev/null
	$(BIN)/python -m pytest -q -n 2 -m "not e2e"
	$(BIN)/python -m pytest -q -m e2e

# Older Airflow lines, each in its own virtualenv pinned by constraints/airflow-<line>.txt (which pins
# apache-airflow itself): the non-e2e tests on each, and on the floor (3.1) the real-deployment tests
# of deferred operators resumed by the triggerer and of the callback wake-up.
E2E_ON_FLOOR := tests/e2e/test_real_deployment.py::test_every_example_dag_succeeds \
	tests/e2e/test_real_deployment.py::test_callback_wakes_sensor_and_operator_while_polling_waits

.venv-%/.installed: constraints/airflow-%.txt pyproject.toml | $(VENV)/.installed
	$(BIN)/uv venv -q --allow-existing --python $(PYTHON) .venv-$*
	$(BIN)/uv pip install -q --python .venv-$*/bin/python -c constraints/airflow-$*.txt apache-airflow -e ".[test]"
	touch $@

# The soak and the 45 s outage tests exercise the provider's own loops and run on the newest line only.
OLDER_LINES_SKIP := --ignore=tests/soak --ignore=tests/operators/test_outages.py

pytest-3.2: .venv-3.2/.installed
	.venv-3.2/bin/python -m pytest -q -n 2 -m "not e2e" $(OLDER_LINES_SKIP)

pytest-3.1: .venv-3.1/.installed
	bash scripts/ensure_postgres.sh
	.venv-3.1/bin/python -m pytest -q -n 2 -m "not e2e" $(OLDER_LINES_SKIP)
	.venv-3.1/bin/python -m pytest -q $(E2E_ON_FLOOR)

# Python 3.13 (the package declares 3.10+; everything else runs on the main virtualenv's Python,
# 3.11 in CI): the non-e2e tests on Airflow $(AIRFLOW_VERSION), without the soak and the outage tests
# as on the older lines. The interpreter comes from pyenv; without it this target fails, it never skips.
PYTHON313 ?= $(firstword $(wildcard $(shell pyenv root 2>/dev/null)/versions/3.13*/bin/python3.13) \
	$(shell command -v python3.13 2>/dev/null))

.venv-py3.13/.installed: pyproject.toml | $(VENV)/.installed
	@if [ -z "$(PYTHON313)" ] || ! "$(PYTHON313)" -c 'import sys; assert sys.version_info[:2] == (3, 13)'; then \
	  echo "pytest-py3.13: no Python 3.13 interpreter found (looked in \$$(pyenv root)/versions/3.13*/bin" \
	    "and on PATH; set PYTHON313=/path/to/python3.13)" >&2; exit 1; fi
	$(BIN)/uv venv -q --allow-existing --python "$(PYTHON313)" .venv-py3.13
	$(BIN)/uv pip install -q --python .venv-py3.13/bin/python "apache-airflow==$(AIRFLOW_VERSION)" -e ".[test]"
	touch $@

pytest-py3.13: .venv-py3.13/.installed
	.venv-py3.13/bin/python -m pytest -q -n 2 -m "not e2e" $(OLDER_LINES_SKIP)

test: lint typecheck docs pytest pytest-3.2 pytest-3.1 pytest-py3.13

# The suite with every core kept busy by bounded CPU hogs (how a busy laptop or CI runner runs it).
test-under-load: venv $(VENV)/.celery-installed
	bash scripts/ensure_postgres.sh
	bash scripts/ensure_redis.sh >/dev/null
	$(BIN)/python scripts/under_load.py -- $(BIN)/python -m pytest -q

demo: venv
	$(BIN)/python scripts/demo.py

# Airflow's UI on 127.0.0.1 with the emulator, the example DAGs and the media view (Ctrl-C stops it).
ui: venv
	$(BIN)/python scripts/ui.py

bench: venv
	$(BIN)/uv pip install -q --python $(BIN)/python ".[bench]"
	$(BIN)/python benchmarks/parse_overhead.py
	$(BIN)/python benchmarks/poll_layers.py
	$(BIN)/python benchmarks/triggerer_capacity.py
	$(BIN)/python benchmarks/wake_cost.py

clean:
	rm -rf $(VENV) .venv-3.1 .venv-3.2 .venv-py3.13 .demo .e2e .ui docs/_build
