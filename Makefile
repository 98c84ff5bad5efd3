PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint bench schema clean

$(BIN)/casegraph: pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(BIN)/casegraph

run: $(BIN)/casegraph
	$(BIN)/casegraph serve

test: $(BIN)/casegraph
	$(BIN)/pytest -q

lint: $(BIN)/casegraph
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: $(BIN)/casegraph
	$(BIN)/python bench/history.py

schema: $(BIN)/casegraph
	$(BIN)/casegraph export-schema > schema/schema.graphql

clean:
	rm -rf $(VENV) .casegraph
