# make run               set up, migrate, seed the demo data and serve http://127.0.0.1:8000 (web, worker, beat)
# make dev               the same with DEBUG on (tracebacks, Django's error pages) and reload on code changes
# make test              set up and run the test suite (PYTEST_ARGS="-k ledger -x" to narrow it)
# make lint              ruff check and ruff format --check
# make format            ruff format and ruff check --fix
# make bench             run each bench/*.py with the venv's python (each prints one JSON line)
# make migrations-check  fail when a model change has no migration
# make vendor            reinstall the vendored charting library (Vega-Lite) from the npm registry into static/vendor/
# make clean             remove var/ (the SQLite database, queue, media and the local keys)
# make help              this list

VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
HOST ?= 127.0.0.1
PORT ?= 8000

.DEFAULT_GOAL := help
.PHONY: help install run dev test lint format bench migrations-check vendor clean

help:
	@sed -n 's/^# \(make .*\)/\1/p' $(firstword $(MAKEFILE_LIST))

install: $(VENV)/.installed

# Rebuilt when pyproject.toml changes. torch is pinned there (torch==2.13.0); keep that pin.
$(VENV)/.installed: pyproject.toml
	@if [ ! -x "$(PY)" ]; then \
		if command -v python3.11 >/dev/null 2>&1; then python3.11 -m venv $(VENV); \
		else python3 -m venv $(VENV); fi; \
	fi
	$(PY) -m pip install -e '.[dev]'
	@touch $@

# DEBUG off: the site's own error pages, no tracebacks; whitenoise serves the static files either way.
run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py demo --seed
	DEBUG=false $(PY) manage.py runstack --host $(HOST) --port $(PORT)

dev: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py demo --seed
	DEBUG=true $(PY) manage.py runstack --host $(HOST) --port $(PORT) --reload

test: install
	$(VENV)/bin/pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: install
	@set -e; found=0; \
	for script in bench/*.py; do \
		[ -e "$$script" ] || continue; \
		case "$$(basename $$script)" in __init__.py|_*) continue;; esac; \
		found=1; echo "== $$script" >&2; $(PY) "$$script"; \
	done; \
	[ $$found = 1 ] || echo "no benchmarks in bench/ yet" >&2

migrations-check: install
	$(PY) manage.py makemigrations --check --dry-run

# Reinstalls the charting library (static/vendor/package.json's exact versions) from the npm registry; the
# browser builds are committed, so nothing is fetched at run time. Source-map comments are dropped (the maps
# are not shipped, and the static files manifest would look for them).
vendor:
	@set -e; tmp=$$(mktemp -d); cp static/vendor/package.json $$tmp/; \
	(cd $$tmp && npm install --no-audit --no-fund --silent); \
	for p in vega vega-lite vega-embed; do \
		cp $$tmp/node_modules/$$p/build/$$p.min.js static/vendor/vega/; \
		cp $$tmp/node_modules/$$p/LICENSE static/vendor/vega/LICENSE-$$p; \
	done; \
	sed -i '/^\/\/# sourceMappingURL=/d' static/vendor/vega/*.min.js; rm -rf $$tmp

clean:
	rm -rf var/
