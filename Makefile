# sevenstep: `make run` (the main job) and `make test` install once into .venv, through a stamp file.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test lint bench notebooks clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/sevenstep compare experiments/baseline_vs_sgd.toml --workers 2

# two test processes (pytest-xdist; the suite's time is in the README); `pytest tests/...` runs them in one
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2

lint: $(STAMP)
	$(BIN)/ruff check sevenstep tests benchmarks
	$(BIN)/ruff format --check sevenstep tests benchmarks

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

# executes nbs/*.ipynb in place, keeping their outputs (plots included) for readers on a code host
notebooks: $(STAMP)
	$(BIN)/python nbs/execute.py

clean:
	rm -rf $(VENV) runs wandb .pytest_cache
