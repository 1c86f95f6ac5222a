# Every target creates .venv and installs the project on first use.
PY      := .venv/bin/python
VENV_OK := .venv/.installed
HOST    ?= 127.0.0.1
PORT    ?= 8000

# glibc otherwise returns freed activation memory to the OS after every step and
# faults it back in: measured 15-20% of a training step on this 2-core machine.
export MALLOC_MMAP_THRESHOLD_ = 33554432
export MALLOC_TRIM_THRESHOLD_ = 1073741824

.PHONY: run test test-fast model eval lint format stack

$(VENV_OK): pyproject.toml
	python3.11 -m venv .venv || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(VENV_OK)

run: $(VENV_OK)  ## serve the embedded default on HRA_HOST:HRA_PORT (default 127.0.0.1:8000), keyless
	HRA_OPEN_ACCESS=$${HRA_OPEN_ACCESS:-true} $(PY) -m server.cli serve

test: $(VENV_OK)  ## the whole suite, slow end-to-end tests included
	$(PY) -m pytest -q

test-fast: $(VENV_OK)
	$(PY) -m pytest -q -m "not slow"

stack: $(VENV_OK)  ## redis-server + two replicas on :8001 :8002 sharing it (Ctrl-C stops all), keyless
	HRA_OPEN_ACCESS=$${HRA_OPEN_ACCESS:-true} $(PY) docker/local_stack.py

model: $(VENV_OK)  ## rebuild models/default from scratch (data, pretrain, heads): ~45 min
	$(PY) -m server.cli build-default

eval: $(VENV_OK)  ## WER table of the README; writes results/evaluation.json
	$(PY) -m server.cli evaluate

lint: $(VENV_OK)
	$(PY) -m ruff check server adapters_store kernels tests load_tests docker
	$(PY) -m ruff format --check server adapters_store kernels tests load_tests docker

format: $(VENV_OK)
	$(PY) -m ruff format server adapters_store kernels tests load_tests docker
	$(PY) -m ruff check --fix server adapters_store kernels tests load_tests docker
