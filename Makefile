# The first `make demo` / `make test` builds .venv: torch first (the CPU 2.13.0 build that lies on this
# machine's disk; a bare `torch` would pull a multi-GB CUDA build), then the project in editable mode.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TINY := models/tiny

.PHONY: venv test lint demo tiny-model clean bench browser-setup

# The runtime dependencies install at the versions docker/constraints.txt pins for the images, so the
# suite tests what ships and a new release on the index cannot change a score or break the build
# between two clones. torch is the exception: the images pin their CUDA base image's build.
$(STAMP): pyproject.toml docker/constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q torch==2.13.0
	grep -v '^torch==' docker/constraints.txt > $(VENV)/constraints.txt
	$(BIN)/pip install -q -e '.[dev]' -c $(VENV)/constraints.txt
	touch $(STAMP)

venv: $(STAMP)

$(TINY)/config.json: | $(STAMP)
	$(BIN)/rmscore make-tiny-model $(TINY) --size tiny

tiny-model: $(TINY)/config.json

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

# Debian's chromium + playwright-core for the report's browser test; fast when already there.
browser-setup:
	bash tests/report/browser/setup.sh

test: $(STAMP) browser-setup
	$(BIN)/ruff check .
	$(BIN)/mypy
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest -q -ra $(PYTEST_ARGS)

demo: $(STAMP) $(TINY)/config.json
	HF_HUB_OFFLINE=1 $(BIN)/rmscore demo --model $(TINY)

clean:
	rm -rf $(VENV) models .demo rmscore.db*
