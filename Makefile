# modelship: local delivery and tests. `make up` is the main command (see README.md).
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python

.PHONY: help bootstrap up down status publish plan test lint bench watch promote models

help:
	@echo "make up      install what is missing, then build, test, push and run the model service locally"
	@echo "make up MODEL=digits@1.0.0   deploy that published version (a rollback); default: the latest"
	@echo "make down    stop everything 'make up' started and empty app/model (PURGE=1: also remove images,"
	@echo "             registry and Azurite data, the model cache and the build cache)"
	@echo "make status  show the running deployment (dev, and prod once promoted: one digest for both)"
	@echo "make promote run the digest the dev stage verified as the local prod stage (port 8081), no rebuild"
	@echo "make watch [MODEL=digits@production]   follow the alias and run 'make up' each time it is promoted"
	@echo "make publish VERSION=1.1.0 | MODEL_DIR=dir   publish a new model to the local store (then make up)"
	@echo "make plan    print the Azure resources the stack would create (offline) and draw docs/architecture.png"
	@echo "make test    run every test (Docker tests are mandatory when CI or MODELSHIP_REQUIRE_DOCKER is set)"
	@echo "make bench   build benchmarks (cold, code-only and model-only rebuilds, image size)"

bootstrap:
	@bash scripts/bootstrap.sh

# MODEL=digits@1.1.0 pins (or rolls back to) a published version; without it, the store's latest.
up: bootstrap
	@$(PY) -m delivery.cli up $(if $(MODEL),--model "$(MODEL)") $(if $(VERBOSE),--verbose)

down:
	@if [ -x $(PY) ]; then $(PY) -m delivery.promote down && $(PY) -m delivery.cli down $(if $(PURGE),--purge --build-cache); \
	 else echo "nothing to stop (no $(VENV))"; fi

status:
	@$(PY) -m delivery.promote status

promote:
	@$(PY) -m delivery.promote promote

# modelship-models against the local store (Azurite's well-known emulator account, not a secret):
#   make models ARGS="evaluate digits@1.2.0 --against production --dataset digits-golden@1"
models: bootstrap
	@AZURE_STORAGE_CONNECTION_STRING="$$($(PY) -c 'import os; from delivery.azurite import connection_string; \
	  print(connection_string(int(os.environ.get("MODELSHIP_AZURITE_PORT", "10000"))))')" \
	  $(VENV)/bin/modelship-models $(ARGS)

# Follows an alias (default digits@production): each promotion releases the version it names.
watch: bootstrap
	@$(PY) -m delivery.watch $(if $(MODEL),--model "$(MODEL)")

publish: bootstrap
	@if [ -n "$(MODEL_DIR)" ]; then $(PY) -m delivery.cli publish --model-dir "$(MODEL_DIR)"; \
	 elif [ -n "$(VERSION)" ]; then $(PY) -m delivery.cli publish --train "$(VERSION)"; \
	 else echo "usage: make publish VERSION=<new version> (trains the demo model) or MODEL_DIR=<dir>" >&2; exit 2; fi

plan: bootstrap
	@$(PY) -m delivery.plan

# pytest exits 5 when it collected nothing: that is a failure here, said out loud.
test: bootstrap
	@$(VENV)/bin/pytest $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; exit $$rc

lint: bootstrap
	@$(VENV)/bin/ruff check .
	@PYTHONPATH=.:app $(VENV)/bin/lint-imports --no-cache

bench: bootstrap
	@$(PY) benchmarks/bench_build.py
