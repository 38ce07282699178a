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

.PHONY: all deps venv test test-unit test-ns fuzz demo bench bench-slurm bench-images bench-devices bench-isolation bench-launcher bench-uge bench-pam bench-chos bench-submit soak clean \
        man deb rpm test-packages test-installed

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

bench-images: venv
	bash bench/images.sh

bench-devices: venv
	bash bench/devices.sh

bench-isolation: venv
	bash bench/isolation.sh

bench-cold: venv
	bash bench/cold.sh

bench-launcher: venv
	bash bench/launcher.sh

bench-uge: venv
	bash bench/uge.sh

bench-pam: venv
	bash bench/pam.sh

bench-chos: venv
	bash bench/chos_run.sh

bench-submit: venv
	bash bench/submit.sh

# the soak (#15): SOAK_JOBS standalone jobs through a throwaway Slurm cluster, several at a time, mixed
# environments, users and outcomes, then nothing left (tests/slurm/test_soak.py; `make test` runs 200)
SOAK_JOBS ?= 10000
soak: venv
	ENVSCHED_SOAK_JOBS=$(SOAK_JOBS) $(PY) -m pytest tests/slurm/test_soak.py -p no:cacheprovider $(PYTEST_ARGS)

# Packages (docs/admin.md section 1): man pages into build/man, the Debian packages into build/
# (lintian clean), the RPM spec built into build/rpm/ (a build test), and the test that builds,
# installs and purges them (tests/packaging; `make test` runs only its fast part)
DEB_BUILD_DEPS := debhelper dh-python python3-all python3-setuptools pybuild-plugin-pyproject \
                  python3-argparse-manpage libslurm-dev libpam0g-dev lintian
RPM_BUILD_DEPS := rpm python3-build python3-installer python3-wheel python3-setuptools \
                  python3-argparse-manpage libslurm-dev libpam0g-dev

man: deps
	$(PYTHON) -B scripts/gen-man.py --outdir build/man

deb:
	bash scripts/install-deps.sh $(DEB_BUILD_DEPS)
	bash packaging/build-deb.sh

rpm:
	bash scripts/install-deps.sh $(RPM_BUILD_DEPS)
	bash packaging/build-rpm.sh

test-packages: venv
	ENVSCHED_TEST_PACKAGES=1 $(PY) -m pytest tests/packaging $(PYTEST_ARGS)

# the end-to-end suites against the installed packages instead of the checkout (tests/installed.py)
test-installed: venv deb
	PY=$(PY) bash packaging/test-installed.sh $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build dist src/*.egg-info bench/out .pytest_cache
