# envsched: `make demo` and `make test` on a fresh Debian 12 machine (as root).
PYTHON   ?= /usr/bin/python3
VENV     ?= .venv
PY       := $(VENV)/bin/python
PYTEST_ARGS ?=
# make fuzz: seconds per C parser (libFuzzer), examples per Python parser (hypothesis), and
# FUZZ_MERGE=1 to keep what it finds in tests/fuzz/corpus/ (new coverage, crash inputs)
FUZZ_SECONDS  ?= 300
FUZZ_EXAMPLES ?= 10000
FUZZ_MERGE    ?= 0

.PHONY: all deps venv test test-unit test-ns fuzz demo bench bench-slurm bench-uge clean

all: venv

deps:
	bash scripts/install-deps.sh

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $@

venv: deps $(VENV)/.installed

# as root from a checkout others can write (/tmp, a home), from a root-owned copy: scripts/test.sh
test: venv
	bash scripts/test.sh $(PYTEST_ARGS)

test-unit: venv
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-ns: venv
	$(PY) -m pytest tests -m ns $(PYTEST_ARGS)

# the parsers that see hostile bytes, for longer than the smoke run in `make test` (tests/fuzz)
fuzz: venv
	ENVSCHED_FUZZ_PROFILE=long ENVSCHED_FUZZ_SECONDS=$(FUZZ_SECONDS) ENVSCHED_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) \
	    ENVSCHED_FUZZ_MERGE=$(FUZZ_MERGE) $(PY) -m pytest tests/fuzz -p no:cacheprovider $(PYTEST_ARGS)

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
