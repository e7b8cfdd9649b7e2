# `make install` installs gencli (editable) with its test, benchmark and gpu (Triton) extras into the active Python
# (use a virtualenv). torch is installed first as the CPU build only when no torch is present, so a
# user who installed a CUDA build keeps it.
PYTHON ?= python3
TORCH_VERSION ?= 2.13.0

ANCHORS_DIR ?= .anchors

.PHONY: install anchors test test-slow bench clean

install:
	$(PYTHON) -c "import torch" 2>/dev/null || $(PYTHON) -m pip install "torch==$(TORCH_VERSION)"
	$(PYTHON) -m pip install -e ".[test,bench,gpu]"
	$(MAKE) anchors

# pytorch-fid and torch-fidelity (the FID/KID/IS references the metric tests compare against) go
# into their own folder without dependencies: their torchvision requirement would otherwise pull
# a CUDA torch over the CPU one. The tests put $(ANCHORS_DIR) on sys.path (see GENCLI_ANCHORS).
anchors:
	$(PYTHON) -m pip install --quiet --no-deps --upgrade --target $(ANCHORS_DIR) \
		torchvision==0.28.0 pytorch-fid==0.3.0 torch-fidelity==0.4.0

test:
	$(PYTHON) -m pytest -q

test-slow:
	$(PYTHON) -m pytest -q -m slow

bench:
	$(PYTHON) bench/sample_vs_diffusers.py

clean:
	rm -rf build dist *.egg-info .pytest_cache $(ANCHORS_DIR)
