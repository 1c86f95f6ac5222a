# Every target creates .venv and installs the project on first use.
PY      := .venv/bin/python
VENV_OK := .venv/.installed
HOST    ?= 127.0.0.1
PORT    ?= 8000

# Training only: glibc otherwise returns freed activation memory to the OS after every
# step and faults it back in (15-20% of a step on this 2-core machine). Never for the
# server: a heap that is never trimmed is exactly the RSS creep a soak must not show.
model: export MALLOC_MMAP_THRESHOLD_ = 33554432
model: export MALLOC_TRIM_THRESHOLD_ = 1073741824
whisper-model: export MALLOC_MMAP_THRESHOLD_ = 33554432
whisper-model: export MALLOC_TRIM_THRESHOLD_ = 1073741824

.PHONY: run test test-fast docs model whisper-model eval lint format stack bench-quick bench memory soak plots \
	load-steady load-cold-start load-hot-swap load-batching load-zipf-scale

$(VENV_OK): pyproject.toml
	python3.11 -m venv .venv || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(VENV_OK)

run: $(VENV_OK)  ## serve the embedded default on HRA_HOST:HRA_PORT (default 127.0.0.1:8000), keyless; uploads go to HRA_STATE_DIR (var/), never models/
	$(PY) -m server.models.whisper.install "$${HRA_MODEL_DIR:-models/default}"
	HRA_OPEN_ACCESS=$${HRA_OPEN_ACCESS:-true} $(PY) -m server.cli serve

# pytest-xdist workers (0: one process). The suite is CPU-bound on 2 cores: 4 workers took
# 9.5 min where one process takes about 7 (torch threads oversubscribe the cores), so the
# default is serial; on a machine with more cores, TEST_WORKERS=4 (each worker starts its own
# redis-server, temp dirs and ports).
TEST_WORKERS ?= 0

test: $(VENV_OK)  ## the whole suite, slow end-to-end tests included
	$(PY) -m pytest -q -n $(TEST_WORKERS)

test-fast: $(VENV_OK)
	$(PY) -m pytest -q -n $(TEST_WORKERS) -m "not slow"

docs: $(VENV_OK)  ## the documentation site into site/ (strict: a broken link or anchor fails); generated pages: python docs/generate.py
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

stack: $(VENV_OK)  ## redis-server + two replicas on :8001 :8002 sharing it (Ctrl-C stops all), keyless
	HRA_OPEN_ACCESS=$${HRA_OPEN_ACCESS:-true} $(PY) docker/local_stack.py

model: $(VENV_OK)  ## rebuild models/default from scratch (data, pretrain, heads, refine): ~39 min
	$(PY) -m server.cli build-default

eval: $(VENV_OK)  ## WER tables of docs/results.md; writes results/evaluation.json and evaluation-whisper.json
	$(PY) -m server.cli evaluate
	$(PY) -m server.cli --model-dir models/whisper-tiny-en evaluate --json results/evaluation-whisper.json

whisper-model: $(VENV_OK)  ## train models/whisper-tiny-en's controller + heads, every domain and speaker (full recipe, ~9 min quiet)
	$(PY) -m server.cli --model-dir models/whisper-tiny-en build-whisper

bench-quick: $(VENV_OK)  ## fused path at default + wav2vec2-base size, Whisper rows: *-quick.json
	$(PY) -m load_tests.bench_fused --quick
	$(PY) -m load_tests.bench_whisper --quick

bench: $(VENV_OK)  ## full repeats, + wav2vec2-large size: load_tests/results/*-full.json
	$(PY) -m load_tests.bench_fused
	$(PY) -m load_tests.bench_whisper

load-steady load-cold-start load-hot-swap load-batching load-zipf-scale: $(VENV_OK)  ## Locust scenarios
	$(PY) -m load_tests.run_load $(subst load-,,$@)

memory: $(VENV_OK)  ## RSS with 10,000 registered heads
	$(PY) -m load_tests.memory_many_heads

soak: $(VENV_OK)  ## 10 minutes of mixed load with hot swaps (not in CI)
	$(PY) -m load_tests.soak --minutes 10

plots: $(VENV_OK)
	$(PY) -m load_tests.plots

lint: $(VENV_OK)
	$(PY) -m ruff check server adapters_store kernels tests load_tests docker docs
	$(PY) -m ruff format --check server adapters_store kernels tests load_tests docker docs

format: $(VENV_OK)
	$(PY) -m ruff format server adapters_store kernels tests load_tests docker
	$(PY) -m ruff check --fix server adapters_store kernels tests load_tests docker
