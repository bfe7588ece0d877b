# Two commands for a fresh machine:
#   make demo   set up .venv and track the demo video (results in out/demo)
#   make test   set up .venv (with test extras) and run the whole test suite
PY := .venv/bin/python

.PHONY: setup setup-dev demo test lint

setup:
	@scripts/setup.sh

setup-dev:
	@SAMURAI_EXTRAS=dev scripts/setup.sh

demo: setup
	$(PY) -m samurai.demo --out out/demo

test: setup-dev
	$(PY) -m pytest -n 2 --dist loadgroup -q

lint: setup-dev
	.venv/bin/ruff check src tests benchmarks
