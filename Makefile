# Two commands a newcomer needs: `make demo` and `make test`. Both build .venv from
# requirements.lock when it is missing or the lock changed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
LOCK_ID := $(shell cat requirements.lock pyproject.toml | sha256sum | cut -c1-12)
STAMP := $(VENV)/.installed-$(LOCK_ID)
PYTEST_ARGS ?=
# `make test` leaves out cases marked slow (XS/S variants, Ray clusters, the 2,000-image memory
# run) to stay near 25 minutes on 2 cores; `make test-slow` runs exactly those, CI runs both.
TEST_MARKS ?= not slow

.PHONY: venv demo lint test test-slow test-all clean

# torch==2.13.0+cpu is served by PyTorch's CPU wheel index, not PyPI. pip first tries the
# configured sources alone (a wheel folder or mirror that has it installs with no further
# lookup); only if that fails does it retry with the CPU index added, so machines that reach
# only the package registries are neither slowed nor broken, and a fresh laptop installs too.
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
PIP_INSTALL := $(PY) -m pip install -q --disable-pip-version-check

$(STAMP):
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PIP_INSTALL) -r requirements.lock 2>$(VENV)/.pip-first-try.log || { \
	  echo "torch +cpu is not on the configured indexes: retrying with --extra-index-url $(TORCH_INDEX)"; \
	  $(PIP_INSTALL) --extra-index-url $(TORCH_INDEX) -r requirements.lock; }
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

# The main job on the shipped, trained Fashion-MNIST XXS (no network): classify a shipped test
# image, export every target in fp32/fp16 and int8, parity for each, fp32 vs int8 accuracy, a report,
# and every artifact again as a pytest parity case (the plugin users run in their CI).
DEMO := $(VENV)/bin/mvit-deploy
DEMO_MODEL := --model mobilevit_xxs --pretrained fashion
demo: venv
	$(DEMO) models
	$(DEMO) predict mvit_deploy/inputs/datasets/fashion_sample_ankle_boot.png $(DEMO_MODEL) --top 3
	$(DEMO) export $(DEMO_MODEL) --target all --out demo-out
	$(DEMO) export $(DEMO_MODEL) --target all --precision int8 --out demo-out
	$(DEMO) export $(DEMO_MODEL) --target coreml --precision w8a8 --out demo-out
	$(DEMO) eval demo-out/*.onnx demo-out/*.tflite demo-out/*.mlpackage --data fashion-mnist:subset
	$(DEMO) bench demo-out/mobilevit_xxs-onnx-fp32.onnx demo-out/mobilevit_xxs-onnx-int8.onnx demo-out/mobilevit_xxs-tflite-fp32.tflite demo-out/mobilevit_xxs-tflite-int8.tflite --iters 30 --json demo-out/bench-host.json
	$(DEMO) report demo-out/bench-host.json --out demo-out/report
	$(PY) -m pytest --mvit-artifacts demo-out --junit-xml demo-out/parity.xml -q -p no:cacheprovider

# The formatting contract: ruff's format and lint rules ([tool.ruff] in pyproject.toml) hold over the tree.
lint: venv
	$(VENV)/bin/ruff format --check . && $(VENV)/bin/ruff check .

# pytest exits 5 when it collects nothing: say so and fail, a suite that tests nothing is not green.
test: venv
	@$(PY) -m pytest -m "$(TEST_MARKS)" $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; fi; exit $$rc

test-slow:
	@$(MAKE) --no-print-directory test TEST_MARKS=slow

test-all:
	@$(MAKE) --no-print-directory test TEST_MARKS="slow or not slow"

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
