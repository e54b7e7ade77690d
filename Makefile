# Two entry points: `make demo` and `make test`. Both create a project-local .venv.
PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.hexssl-installed

.PHONY: demo test test-all test-device-versions lint bench first-comparison clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first: on CPU machines this picks the local CPU wheel instead of CUDA packages
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/hexssl demo

lint: $(STAMP)
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -q -m "not slow"

test-all: lint
	$(BIN)/python -m pytest -q

# The default suite under the GPU machine's versions (torch 2.11.0, lightning 2.6.6), in a
# second venv. PyPI's torch 2.11.0 is the CUDA build: about 4.6 GB, runs on CPUs too.
DEVICE_VENV := .venv-device
test-device-versions:
	$(PYTHON) -m venv $(DEVICE_VENV)
	$(DEVICE_VENV)/bin/python -m pip install -q "torch==2.11.0" "lightning==2.6.6"
	$(DEVICE_VENV)/bin/python -m pip install -q -e ".[dev]"
	$(DEVICE_VENV)/bin/python -m pytest -q -m "not slow"

bench: $(STAMP)
	$(BIN)/python benchmarks/train_speed.py
	$(BIN)/python benchmarks/loss_speed.py
	$(BIN)/python benchmarks/data_throughput.py
	$(BIN)/python benchmarks/demo_time.py

first-comparison: $(STAMP)
	$(BIN)/python benchmarks/first_comparison.py

clean:
	rm -rf $(VENV) $(DEVICE_VENV) .pytest_cache .mypy_cache .ruff_cache
