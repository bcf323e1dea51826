# Two entry points for a fresh machine:
#   make demo   set up, then image the bundled VLA 3C273 data into a local Butler repo
#   make test   set up, then run the test suite
#   make docs   set up, then build the HTML docs into doc/_build/html (warnings are errors)
VENV      ?= .venv
PY        := $(VENV)/bin/python
DEMO_DIR  ?= demo
REPO      ?= $(DEMO_DIR)/repo

.PHONY: setup demo test docs lint clean

# An editable install is not byte-compiled, and where PYTHONDONTWRITEBYTECODE is set Python never
# writes the cache itself: every radio-clean process would compile the package again (~0.4 s).
setup: $(VENV)/.installed
	@$(PY) -m compileall -q python/radio_clean

$(VENV)/.installed: pyproject.toml
	@py=$$(scripts/find-python312) || exit 1; \
	  echo "Using $$py"; \
	  [ -x $(PY) ] || $$py -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $@

demo: setup
	$(VENV)/bin/radio-clean demo-data $(DEMO_DIR)/data
	$(VENV)/bin/radio-clean image $(DEMO_DIR)/data/3C273XC1.ms --repo $(REPO) --export $(DEMO_DIR)/images \
	    --set imsize=256 --set cell=0.5arcsec --set weighting=briggs --set robust=0.5 \
	    --set niter=1000 --set pbcor=True
	$(VENV)/bin/butler query-datasets $(REPO) visibilities --collections raw/visibilities
	$(VENV)/bin/butler query-dimension-records $(REPO) field
	@echo "FITS, PNG and summary.json files: $(DEMO_DIR)/images/   repository: $(REPO)"

test: setup
	$(VENV)/bin/pytest -n 2 tests

# tests/test_docs.py builds with the same options.
docs: setup
	$(VENV)/bin/sphinx-build -W --keep-going -b html doc doc/_build/html
	@echo "HTML docs: doc/_build/html/index.html"

lint: setup
	$(VENV)/bin/ruff check python tests bin.src

clean:
	rm -rf $(VENV) $(DEMO_DIR) build doc/_build python/*.egg-info
