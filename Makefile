# Two commands for a fresh clone:  make demo  (one full evaluation cycle)  and  make test.
# The virtual environment lives in .venv; uv installs exactly what uv.lock pins.

SHELL := /bin/bash
PYTHON312 ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12) $(shell command -v python3.12 2>/dev/null))
UV ?= $(shell command -v uv 2>/dev/null || echo python3 -m uv)
VENV := .venv
STAMP := $(VENV)/.installed

export UV_PYTHON_DOWNLOADS := never
export UV_LINK_MODE := copy
export MUJOCO_GL := egl
export KINITRO_STATE_DIR ?= $(CURDIR)/.kinitro

.PHONY: install demo dev test test-fast lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml uv.lock
	@test -n "$(PYTHON312)" || { echo "Python 3.12 not found: install it (pyenv install 3.12) or set PYTHON312=/path/to/python3.12"; exit 1; }
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	@ldconfig -p | grep -q 'libEGL.so.1' || { echo "installing EGL for headless MuJoCo"; \
		apt-get update -qq && apt-get install -y -qq libegl1 libgl1-mesa-dri >/dev/null; }
	$(UV) sync --frozen --extra genesis --extra k8s --python "$(PYTHON312)"
	sim_images/genesis/fetch-g1-assets.sh
	@touch $@

demo: install
	$(VENV)/bin/kinitro demo

dev: install
	$(VENV)/bin/kinitro dev

test: install
	$(VENV)/bin/python -m pytest

test-fast: install
	$(VENV)/bin/python -m pytest -m "not slow"

lint: install
	$(VENV)/bin/ruff check .

bench: install
	@command -v wrk >/dev/null 2>&1 || { echo "installing wrk (load generator of benchmarks/bench_api.py)"; \
		apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
	@for b in benchmarks/bench_*.py; do $(VENV)/bin/python $$b; done

clean:
	rm -rf $(VENV) .kinitro
