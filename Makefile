# Two commands: `make run` and `make test`. Everything else is a helper of theirs.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
# Where browsers and the gateway reach the web process (payment pages, webhooks, links in SMS).
# honcho gives every process its own PORT (web PORT, worker PORT+100, beat PORT+200, urgent PORT+300), so the workers
# and beat must be told the web's address rather than derive it from theirs.
SERVE_ENV = PATH="$(CURDIR)/$(BIN):$$PATH" PORT=$(PORT) PUBLIC_BASE_URL="$${PUBLIC_BASE_URL:-http://127.0.0.1:$(PORT)}"
export DJANGO_SETTINGS_MODULE := config.settings
# No key is written in the repository: without SECRET_KEY, every process these commands start reads one
# random key created once under VAR_DIR (config/settings.py: secret_key_read).
export SECRET_KEY_FILE ?= $(or $(VAR_DIR),$(CURDIR)/var)/secret-key

.PHONY: run test lint format migrate demo web worker beat urgent clean

$(BIN)/.installed: pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $@

# The Green Button export is checked with an independent parser from npm; without npm that one test is skipped.
GREENBUTTON := tests/meters/greenbutton
$(GREENBUTTON)/node_modules/.package-lock.json: $(GREENBUTTON)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then npm ci --prefix $(GREENBUTTON) --no-audit --no-fund --loglevel error; \
	else echo "npm not found: the Green Button parser test will be skipped"; fi

## run: install, migrate, load demo data, then serve web + Celery worker + beat until Ctrl-C
run: $(BIN)/.installed
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	$(BIN)/python manage.py seed_demo
	@echo
	@echo "  API docs:  http://127.0.0.1:$(PORT)/api/docs/"
	@echo "  Admin:     http://127.0.0.1:$(PORT)/admin/   (login printed above)"
	@echo "  Health:    http://127.0.0.1:$(PORT)/healthz"
	@echo
	$(SERVE_ENV) $(BIN)/honcho start -f Procfile

## test: the whole suite (PostgreSQL + Redis when DATABASE_URL and REDIS_URL are set)
# Tests publish to a queue of their own, so a `make run` worker on the same broker never takes their tasks.
test: $(BIN)/.installed $(GREENBUTTON)/node_modules/.package-lock.json
	CELERY_QUEUE=$${CELERY_QUEUE:-test-$$$$} $(BIN)/pytest $(PYTEST_ARGS)

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python manage.py spectacular --validate --fail-on-warn --file /dev/null

format: $(BIN)/.installed
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

web worker beat urgent: $(BIN)/.installed
	$(SERVE_ENV) $(BIN)/honcho start -f Procfile $@

clean:
	rm -rf $(VENV) var
