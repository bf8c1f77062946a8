# Two commands do everything (see README):  make demo   and   make test
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup test-deps demo test lint format bench clean

# The virtual environment is rebuilt only when the dependency files change.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# System packages the tests drive: Debian's chromium and chromium-driver (the playground's
# browser test; playwright's own browser download is not used), curl (the examples of
# docs/serving.md) and g++ (the C++ decode step, held equal to PyTorch's). Installed with
# apt when missing; CI runs as root, elsewhere sudo asks.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
test-deps:
	@missing=""; \
	test -x /usr/bin/chromium || missing="chromium chromium-driver"; \
	command -v curl >/dev/null || missing="$$missing curl"; \
	command -v g++ >/dev/null || missing="$$missing g++"; \
	if [ -n "$$missing" ]; then \
		echo "installing $$missing (apt)"; \
		$(SUDO) apt-get update && $(SUDO) apt-get install -y $$missing; \
	fi

# A second `make demo` is refused while runs/demo holds a run (it may be one trained further
# since); `make demo FORCE=1` replaces it.
demo: $(STAMP)
	@if [ -z "$(FORCE)" ] && [ -e runs/demo/last ]; then \
		echo "runs/demo already holds a run; make demo FORCE=1 replaces it" >&2; exit 2; fi
	$(BIN)/scratchllm demo $(if $(FORCE),--force)

test: $(STAMP) test-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -n 2 -q

lint: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Every benchmark with its default settings, but bench_finetune.py: its figures are
# post-training studies that name the one to run (`python benchmarks/bench_finetune.py all`).
bench: $(STAMP)
	for f in benchmarks/bench_*.py; do \
		[ $$f = benchmarks/bench_finetune.py ] && continue; \
		echo "== $$f"; $(BIN)/python $$f || exit 1; \
	done

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .ruff_cache
