# The two Quickstart commands: `make demo` (the whole pipeline) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARTIFACTS ?= artifacts
EXTRAS ?= train,micro,report,npu,search,dev

.PHONY: setup demo test check prove lint clean docs

# A workstation install: the package, TensorFlow and tf2onnx, TFLite Micro, the test tools.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

setup: $(VENV)/.installed

# Firmware sources: a folder of the pinned archives where one is at hand (FIRMWARE_SOURCES=DIR),
# else the firmware command downloads them from GitHub into its cache.
FIRMWARE_SOURCES ?= $(wildcard ../shared/third_party)
SOURCES_OPTION := $(if $(FIRMWARE_SOURCES),--sources $(FIRMWARE_SOURCES))

# data -> train (the fast recipe) -> export --int8 -> verify -> bench -> firmware (Cortex-M4 in
# QEMU, both engines: TFLM with CMSIS-NN, and the model compiled to C) -> bundle (with the
# firmware's figures of the same bytes, and the C engine) -> report.
# The firmware's tools are installed where this user may; where they are missing, the firmware
# step records why it was skipped (the report says so) and the demo goes on.
demo: setup
	$(BIN)/mnist-edge data
	$(BIN)/mnist-edge train --artifacts $(ARTIFACTS) --overwrite
	$(BIN)/mnist-edge export --int8 --artifacts $(ARTIFACTS) --overwrite
	$(BIN)/mnist-edge verify --artifacts $(ARTIFACTS)
	$(BIN)/mnist-edge bench --artifacts $(ARTIFACTS)
	tools/firmware-tools.sh
	$(BIN)/mnist-edge firmware --artifacts $(ARTIFACTS) --model $(ARTIFACTS)/model_int8_mcu.tflite \
		--engine all --overwrite --skip-missing-tools $(SOURCES_OPTION)
	$(BIN)/mnist-edge bundle --artifacts $(ARTIFACTS) --overwrite $(SOURCES_OPTION)
	$(BIN)/mnist-edge report --artifacts $(ARTIFACTS)

# The suite, less the platform proofs (emulated aarch64, tflite-runtime 2.14) and the second TFLM
# library build (Cortex-M55, reference kernels): `make prove` runs those.
test: setup
	$(BIN)/python -m pytest -m "not proof and not extended"

# The loop between edits (a few minutes on 2 cores): the tests that train nothing, and one small
# run of the whole pipeline through the CLI (tests/test_check.py).
check: setup
	$(BIN)/python -m pytest -m "(not slow and not proof and not extended) or check" -q

prove: setup
	$(BIN)/python -m pytest -m "proof or extended"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
	find $(ARTIFACTS) -mindepth 1 ! -name .gitkeep -delete

# Every example output in README.md and docs/*.md, rewritten from one small real run of the
# pipeline in a temporary folder (tools/docs.py; `tools/docs.py --only NAME` for one example).
# tests/test_docs.py fails when a page no longer matches what its command prints.
docs: setup
	$(BIN)/python tools/docs.py $(SOURCES_OPTION)
