# `make install` installs gencli (editable) with its test and benchmark extras into the active Python
# (use a virtualenv). torch is installed first as the CPU build only when no torch is present, so a
# user who installed a CUDA build keeps it.
PYTHON ?= python3
TORCH_VERSION ?= 2.13.0

.PHONY: install test test-slow bench clean

install:
	$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install "torch==$(TORCH_VERSION)"
	$(PYTHON) -m pip install -e ".[test,bench]"

test:
	$(PYTHON) -m pytest -q

test-slow:
	$(PYTHON) -m pytest -q -m slow

bench:
	$(PYTHON) bench/sample_vs_diffusers.py

clean:
	rm -rf build dist *.egg-info .pytest_cache
