# Two commands matter: `make demo` (the whole pipeline on the built-in data) and `make test`.
# Each creates .venv when it is missing.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= $(shell nproc 2>/dev/null || echo 2)
# torch and torchvision first, pinned to releases that install together.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1

.PHONY: demo test lint clean-demo venv

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

demo: venv
	$(BIN)/snakemake --cores $(CORES) evaluate
	@echo
	@echo "Summary: results/demo/eval/summary.md   (report: $(BIN)/snakemake --report report.html)"

test: venv
	$(BIN)/python -m pytest

lint: venv
	$(BIN)/ruff check txtrayalign tests bench
	$(BIN)/snakemake --lint

clean-demo:
	rm -rf results/demo .snakemake
