# Two commands a newcomer needs: `make demo` and `make test`. Both build .venv from
# requirements.lock when it is missing or the lock changed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
LOCK_ID := $(shell cat requirements.lock pyproject.toml | sha256sum | cut -c1-12)
STAMP := $(VENV)/.installed-$(LOCK_ID)
PYTEST_ARGS ?=

.PHONY: venv demo test clean

$(STAMP):
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	@rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

demo: venv
	$(VENV)/bin/mvit-deploy models
	$(VENV)/bin/mvit-deploy predict mvit_deploy/calibration/photos/chelsea.jpg --model mobilevit_xxs
	$(VENV)/bin/mvit-deploy export --model mobilevit_xxs --target all --out demo-out
	$(VENV)/bin/mvit-deploy bench demo-out/mobilevit_xxs-onnx-fp32.onnx demo-out/mobilevit_xxs-tflite-fp32.tflite --iters 30 --json demo-out/bench-host.json
	$(VENV)/bin/mvit-deploy report demo-out/bench-host.json --out demo-out/report

# pytest exits 5 when it collects nothing: say so and fail, a suite that tests nothing is not green.
test: venv
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; fi; exit $$rc

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
