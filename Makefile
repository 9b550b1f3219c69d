# Two commands on a fresh machine with only Python and make: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch goes in first and alone, so pip never resolves it to a CUDA build.
TORCH  ?= torch==2.13.0
OUT    ?= runs/demo

.PHONY: install demo test bench gpu-check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[test,harness,data]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/alignlab demo --out $(OUT)

test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/pip install --quiet -e ".[bench]"
	$(BIN)/python benchmarks/run_all.py

# bf16 on one CUDA device; writes BENCHMARKS.md's GPU section. Without CUDA: one line, exit code 2.
gpu-check: install
	$(BIN)/python benchmarks/gpu_check.py

clean:
	rm -rf runs .pytest_cache
