# envsched: `make demo` and `make test` on a fresh Debian 12 machine (as root).
PYTHON   ?= /usr/bin/python3
VENV     ?= .venv
PY       := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: all deps venv test test-unit test-ns demo bench bench-slurm bench-uge clean

all: venv

deps:
	bash scripts/install-deps.sh

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $@

venv: deps $(VENV)/.installed

test: venv
	$(PY) -m pytest tests $(PYTEST_ARGS)
	@if [ "$$(id -u)" -eq 0 ]; then echo "== unit tests again as an unprivileged user"; \
	    bash scripts/test-unprivileged.sh $(PYTEST_ARGS); fi

test-unit: venv
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-ns: venv
	$(PY) -m pytest tests -m ns $(PYTEST_ARGS)

demo: venv
	bash scripts/demo.sh

bench: venv
	bash bench/run.sh

bench-slurm: venv
	bash bench/slurm.sh

bench-uge: venv
	bash bench/uge.sh

clean:
	rm -rf $(VENV) build dist src/*.egg-info bench/out .pytest_cache
