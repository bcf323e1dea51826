# Two entry points for a fresh machine:
#   make demo   set up, then image the bundled VLA demo data into a local Butler repo
#   make test   set up, then run the test suite
VENV      ?= .venv
PY        := $(VENV)/bin/python
DEMO_DIR  ?= demo
REPO      ?= $(DEMO_DIR)/repo

.PHONY: setup demo test lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@py=$$(scripts/find-python312) || exit 1; \
	  echo "Using $$py"; \
	  [ -x $(PY) ] || $$py -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $@

demo: setup
	$(VENV)/bin/radio-clean demo-data $(DEMO_DIR)/data
	$(VENV)/bin/radio-clean create-repo $(REPO)
	$(VENV)/bin/radio-clean ingest $(REPO) $(DEMO_DIR)/data/*.ms
	$(VENV)/bin/butler query-datasets $(REPO) visibilities --collections raw/visibilities
	$(VENV)/bin/butler query-dimension-records $(REPO) field

test: setup
	$(VENV)/bin/pytest -n 2 tests

lint: setup
	$(VENV)/bin/ruff check python tests bin.src

clean:
	rm -rf $(VENV) $(DEMO_DIR) build python/*.egg-info
