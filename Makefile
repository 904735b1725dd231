# Two commands do all set-up on a fresh machine:
#   make reproduce   the main job (MVTec AD from MVTEC_ROOT, else the embedded demo dataset)
#   make test        the whole test suite (what CI runs through .ci/run), then nbval on the committed demo
#   make demo-results  regenerate the committed results/demo/ (see results/README.md)
#   make test-fast   the unit tests that train nothing (about a minute)
#   make lint        ruff's lint rules (also run by .ci/run)
#   make docs        the documentation site, offline, warnings as errors (docs/_build/html; also run by .ci/run)
#   make lock        refresh requirements-lock.txt (the newest releases pyproject.toml's ranges allow)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# Every package make install installs, at exact versions (Linux x86-64, Python 3.11; pip-tools' pip-compile).
LOCK   := requirements-lock.txt
# CPU-only machines: make install TORCH_INDEX=https://download.pytorch.org/whl/cpu (same pins, CPU wheels;
# the lock's CUDA-only packages are left out)
TORCH_INDEX ?=
CUDA_ONLY := '^(torch|torchvision|triton|nvidia-[a-z0-9-]+|cuda-[a-z-]+)=='
# Extra arguments for the main job, e.g. make reproduce ARGS="--categories bottle -p epochs 200"
ARGS   ?=

.PHONY: install lock lint docs test test-fast reproduce demo-results ablation-demo bench clean

$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
ifeq ($(TORCH_INDEX),)
	$(BIN)/python -m pip install --quiet -r $(LOCK)
else
	$(BIN)/python -m pip install --quiet --index-url $(TORCH_INDEX) torch==2.14.1 torchvision==0.29.1
	grep -vE $(CUDA_ONLY) $(LOCK) > $(VENV)/lock-cpu.txt
	$(BIN)/python -m pip install --quiet -r $(VENV)/lock-cpu.txt
endif
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m pip check
	touch $(STAMP)

# pip-tools in a venv of its own (not in the lock); --upgrade: resolve afresh, ignoring the old pins
lock:
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet pip-tools==7.6.2
	CUSTOM_COMPILE_COMMAND="make lock" .venv-lock/bin/pip-compile --upgrade --quiet --extra dev --extra docs --strip-extras \
		--no-emit-index-url --no-emit-find-links --output-file $(LOCK) pyproject.toml

install: $(STAMP)

# ruff's lint rules ([tool.ruff] in pyproject.toml); .ci/run runs it before the tests
lint: $(STAMP)
	$(BIN)/ruff check stfpm_lib tests notebooks

# the site: docs/*.md (MyST), the API reference (autosummary + numpydoc), the committed demo notebooks
# (not executed); any warning fails the build (docs/conf.py; .ci/run runs it after make lint)
docs: $(STAMP)
	$(BIN)/python -m sphinx -W --keep-going -b html docs docs/_build/html

test: $(STAMP)
	$(BIN)/python -m pytest
	$(BIN)/python -m stfpm_lib.runner.demo_results nbval

# the fast lane while editing: unit tests that train nothing (about a minute); make test before committing
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not integration and not slow"

reproduce: $(STAMP)
	$(BIN)/stfpm reproduce $(ARGS)

demo-results: $(STAMP)
	$(BIN)/python -m stfpm_lib.runner.demo_results regenerate

bench: $(STAMP)
	$(BIN)/stfpm bench metrics
	$(BIN)/stfpm bench speed

clean:
	rm -rf $(VENV) .venv-lock .pytest_cache

# The committed demo versions of the ablation studies (results/ablations/<study>/): the same study files,
# made small from the command line (random teacher, 3 epochs, 64 px, 3 seeds, one demo category). The
# factors demo leaves out crop224 (needs images over 224 px) and epochs200 (its own epochs win over -p).
ABLATION_DEMO = --data-root demo -p epochs 3 -p image_size 64 -p batch_size 8 -p teacher_weights random --seeds 0,1,2 \
	--categories PA_BRG03_TL --jobs 2 --no-progress
FACTORS_DEMO := official,loss_half,loss_batch_sum,loss_layer_mean,wd1e-3,select_last,select_val_loss
FACTORS_DEMO := $(FACTORS_DEMO),select_test_leakage,student_zero_last_bn,map_half,map_per_area,upsample_direct
FACTORS_DEMO := $(FACTORS_DEMO),fusion_sum,smooth4,mask_eq1,mask_nearest,split_random

ablation-demo: $(STAMP)
	$(BIN)/stfpm study studies/layers.yaml $(ABLATION_DEMO) --out results/ablations/layers
	$(BIN)/stfpm study studies/backbones.yaml $(ABLATION_DEMO) --out results/ablations/backbones
	$(BIN)/stfpm study studies/teacher.yaml $(ABLATION_DEMO) --variants random,random_zero_last_bn \
		--baseline random --out results/ablations/teacher
	$(BIN)/stfpm study studies/factors.yaml $(ABLATION_DEMO) --variants $(FACTORS_DEMO) \
		--out results/ablations/factors
	$(BIN)/stfpm study studies/seeds.yaml $(ABLATION_DEMO) --out results/ablations/seeds
