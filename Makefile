# chunkflow: `make demo` and `make test` are all a fresh machine needs.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
TORCH  := torch==2.13.0

.PHONY: install browser demo test docs screenshots bench lint clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install $(TORCH)
	$(PIP) install -e ".[test]"
	touch $@

install: $(VENV)/.installed

# Headless Chromium for the browser tests; without it (no apt, not root) they skip and say why.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq chromium chromium-driver) || \
		echo "chromium not installed: the browser tests will be skipped"

demo: $(VENV)/.installed
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash examples/demo.sh

test: $(VENV)/.installed browser
	$(PY) -m pytest

# The API reference from the docstrings (the test extra holds the docs extra); warnings fail it.
docs: $(VENV)/.installed
	$(PY) -m sphinx -b html -W --keep-going -q docs docs/_build/html
	@echo "API reference: docs/_build/html/index.html"

# The README's viewer screenshots, taken by the browser tests.
screenshots: $(VENV)/.installed browser
	command -v chromium >/dev/null && command -v chromedriver >/dev/null
	$(PY) -m pytest -q tests/viewer -k browser --screenshot-dir docs/images

bench: $(VENV)/.installed
	$(PY) bench/run.py

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check chunkflow tests bench examples
	$(VENV)/bin/ruff format --check chunkflow tests bench examples

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache docs/_build
