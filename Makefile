# Two commands for a fresh machine:
#   make demo   set up .venv and track the demo video (results in out/demo)
#   make test   set up .venv (with test extras), check / install what the tests need
#               (scripts/test-prereqs.sh) and run the whole test suite; CI runs exactly this
PY := .venv/bin/python

.PHONY: setup setup-dev test-prereqs demo test lint

setup:
	@scripts/setup.sh

setup-dev:
	@SAMURAI_EXTRAS=dev scripts/setup.sh

test-prereqs:
	@scripts/test-prereqs.sh

demo: setup
	$(PY) -m samurai.demo --out out/demo

# One intra-op thread per xdist worker: the two workers share two cores without oversubscription.
test: setup-dev test-prereqs
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) -m pytest -n 2 --dist loadgroup -q

lint: setup-dev
	.venv/bin/ruff check src tests benchmarks
