# Set-up and the two entry points: `make demo` and `make test` (`make test-fast`: without the slow tests;
# `make lint`: ruff; `make typecheck`: mypy; `make gpu-check`: the CUDA paths in a few minutes, a CPU dry run elsewhere).
# The CPU build of torch goes in first so that no CUDA wheels are pulled on a CPU machine;
# the package itself only asks for torch>=2.1 and so installs against any recent torch.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# On a CPU machine this resolves to the CPU wheel (a local wheel here, or the CPU index you pass in TORCH_INDEX).
TORCH  ?= torch==2.13.0
TORCH_INDEX ?=
PIP    := $(PY) -m pip install -q --disable-pip-version-check
# test processes (pytest-xdist, one file per process at a time: each test uses one torch thread)
TEST_WORKERS ?= 2
PYTEST := $(PY) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile

.PHONY: demo test test-fast lint typecheck install install-test bench gpu-check clean

$(VENV)/.base: pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip >/dev/null
	$(PIP) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX),) "$(TORCH)"
	$(PIP) -e . "numpy<2"
	touch $@

$(VENV)/.test: $(VENV)/.base
	$(PIP) -e ".[test]" "numpy<2"
	touch $@

install: $(VENV)/.base
install-test: $(VENV)/.test

# --overwrite: `make demo` replaces the runs/demo of an earlier `make demo`
demo: $(VENV)/.base
	$(VENV)/bin/policylens demo --overwrite

test: $(VENV)/.test
	$(PYTEST)

# the tests not marked @pytest.mark.slow
test-fast: $(VENV)/.test
	$(PYTEST) -m "not slow"

lint: $(VENV)/.test
	$(PY) -m ruff check src tests benchmarks

typecheck: $(VENV)/.test
	$(PY) -m mypy

bench: $(VENV)/.test
	$(PY) -m benchmarks.run_all

# PPO updates (atari, procgen-easy) and a simulator training run on CUDA -> $OUT/gpu_check.json (benchmarks/README.md)
gpu-check: $(VENV)/.test
	$(PY) -m benchmarks.gpu_check

clean:
	rm -rf $(VENV) runs/demo
