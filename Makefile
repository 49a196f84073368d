# Two commands do all the set-up: `make demo` and `make test`.
# Both create .venv when missing and (re)install the core (editable), what the bundles import beyond it and the
# test tools only when pyproject.toml changed. `make wheel` builds the core's wheel into dist/.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?= -n 2

.PHONY: install test test-fast demo lint clean-outputs wheel

$(PY):
	python3 -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[bundles,test,onnx]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(PY) -m ruff check .

test: $(STAMP) lint
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

demo: $(STAMP)
	$(PY) tools/demo.py

# removes exactly what `make demo` created (listed in .demo_outputs.json), never anything else
clean-outputs: $(STAMP)
	$(PY) tools/demo.py --clean

# the core as a wheel, the version each bundle's metadata.json pins (gan_core==<version>)
wheel: $(STAMP)
	$(PY) -m pip wheel --quiet --no-deps --wheel-dir dist .
