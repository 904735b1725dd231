# Two commands do all set-up on a fresh machine:
#   make reproduce   the main job (MVTec AD from MVTEC_ROOT, else the embedded demo dataset)
#   make test        the whole test suite (what CI runs through .ci/run), then nbval on the committed demo
#   make demo-results  regenerate the committed results/demo/ (see results/README.md)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# CPU-only machines: make install TORCH_INDEX=https://download.pytorch.org/whl/cpu (same pins, CPU wheels)
TORCH_INDEX ?=
# Extra arguments for the main job, e.g. make reproduce ARGS="--categories bottle -p epochs 200"
ARGS   ?=

.PHONY: install test reproduce demo-results bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(if $(TORCH_INDEX),$(BIN)/python -m pip install --quiet --index-url $(TORCH_INDEX) torch==2.14.1 torchvision==0.29.1)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest
	$(BIN)/python -m stfpm_lib.runner.demo_results nbval

reproduce: $(STAMP)
	$(BIN)/python -m stfpm_lib.batch reproduce $(ARGS)

demo-results: $(STAMP)
	$(BIN)/python -m stfpm_lib.runner.demo_results regenerate

bench: $(STAMP)
	$(BIN)/python -m stfpm_lib.bench metrics
	$(BIN)/python -m stfpm_lib.bench speed

clean:
	rm -rf $(VENV) .pytest_cache
