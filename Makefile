# Two commands do all the set-up:  `make demo`  and  `make test`.
# Pick the torch build for your machine with TORCH_SPEC, e.g.
#   make test TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu124"
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.photoshield-installed

.PHONY: setup demo lint test bench docs clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -e ".[dev,judges,baselines]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/photoshield demo

# ruff (syntax errors, pyflakes) and the import-linter contracts in pyproject.toml (layers point down, no cycles,
# the library never imports training/).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

test: $(STAMP) lint
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	for script in benchmarks/bench_*.py; do $(BIN)/python $$script || exit 1; done

# The documentation site (mkdocs.yml, docs/) into site/, offline: --strict (warnings are errors) when that
# passes, else a plain build that still lists the warnings.
docs: $(STAMP)
	$(BIN)/mkdocs build --strict --site-dir site || { echo "make docs: strict build failed, building without --strict"; \
		$(BIN)/mkdocs build --site-dir site; }

clean:
	rm -rf $(VENV) photoshield-demo .pytest_cache site
