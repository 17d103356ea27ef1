# One command each for a newcomer: `make run` and `make test` build .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/identity serve

# Two passes: the suite in parallel, one worker per CPU (each test has its own database and
# Redis prefix), then alone the tests that cut shared servers off or load the machine on
# purpose (marker `serial`), which would fail the others or their own timings.
test: $(STAMP)
	$(BIN)/pytest -n auto -m "not serial"
	$(BIN)/pytest -m serial

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV)
