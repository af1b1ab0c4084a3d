# The two commands of the README: `make run` and `make test`. Everything installs from here.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint format clean constraints bench bench-quick bench-tools check-infra browser soak audit compose-up compose-down

$(STAMP): requirements.txt requirements-dev.txt requirements-lake.txt constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (set PYTHON=python3.11)")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip==25.3
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m devtools.run

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# 15 minutes of mixed API load and ingestion with a fault every minute (tests/reliability/soak.py).
SOAK_MINUTES ?= 15
soak: $(STAMP)
	$(PY) -m tests.reliability.soak --minutes $(SOAK_MINUTES)

# Known vulnerabilities in every pinned Python dependency (asks PyPI: needs the internet).
audit: $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check pip-audit==2.10.1
	$(PY) -m pip_audit --requirement constraints.txt --no-deps --disable-pip --progress-spinner off

# Benchmarks against their floors (docs/benchmarks.md): wrk from Debian's packages (as root, if missing)
# and the bench-only tools (requirements-bench.txt: dlt, py-spy) in bench/.venv; a case whose tool is
# missing is skipped with a line saying so.
BENCH_VENV := bench/.venv
BENCH_STAMP := $(BENCH_VENV)/.installed

$(BENCH_STAMP): requirements-bench.txt
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	if $(BENCH_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-bench.txt; \
	then touch $(BENCH_STAMP); \
	else echo "bench/.venv: requirements-bench.txt did not install; the dlt case will be skipped"; fi

bench-tools: $(STAMP) $(BENCH_STAMP)
	command -v wrk >/dev/null || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk; } \
		|| echo "wrk could not be installed; the API case will be skipped"

bench: bench-tools
	$(PY) -m bench

bench-quick: bench-tools
	$(PY) -m bench --quick

# Headless Chromium for the test that opens the daily report page (Debian/Ubuntu, as root; CI runs it).
browser:
	command -v chromium >/dev/null || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; }

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

format: $(STAMP)
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

constraints: $(STAMP)
	{ head -n 2 constraints.txt; $(PY) -m pip freeze --disable-pip-version-check --exclude-editable; } > constraints.tmp
	mv constraints.tmp constraints.txt

# Offline infrastructure checks (SPEC 9): their own venv and npm folders, pinned in infra/<area>/.
INFRA_VENV := .venv-infra
INFRA_STAMP := $(INFRA_VENV)/.installed
INFRA_REQS := $(wildcard infra/*/requirements.txt)
INFRA_LOCKS := $(wildcard infra/*/package-lock.json)

$(INFRA_STAMP): $(INFRA_REQS) $(INFRA_LOCKS) infra/constraints.txt
	test -x $(INFRA_VENV)/bin/python || $(PYTHON) -m venv $(INFRA_VENV)
	$(INFRA_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip==25.3
	$(INFRA_VENV)/bin/python -m pip install --quiet --disable-pip-version-check $(foreach f,$(INFRA_REQS),-r $(f)) \
		-c infra/constraints.txt
	for lock in $(INFRA_LOCKS); do npm ci --prefix "$$(dirname $$lock)" --no-audit --no-fund --loglevel=error || exit 1; done
	touch $(INFRA_STAMP)

check-infra: $(INFRA_STAMP)
	PATH="$(CURDIR)/$(INFRA_VENV)/bin:$$PATH" infra/check.sh

# Docker users: app + PostgreSQL + LocalStack (docs/deploy-containers.md).
COMPOSE ?= docker compose
COMPOSE_URL ?= http://127.0.0.1:$(or $(APP_HOST_PORT),8000)

compose-up:
	$(COMPOSE) up --build -d
	@echo "waiting for $(COMPOSE_URL)/ready (up to 3 minutes)..."
	@for i in $$(seq 90); do \
		if curl -fsS -o /dev/null "$(COMPOSE_URL)/ready" 2>/dev/null; then \
			echo "ready: $(COMPOSE_URL)/docs"; \
			echo "bearer token with every scope (1 h): paste it into Authorize"; \
			$(COMPOSE) exec -T app python -m app token; \
			exit 0; \
		fi; \
		sleep 2; \
	done; \
	echo "$(COMPOSE_URL)/ready did not answer 200 within 3 minutes"; \
	$(COMPOSE) ps; \
	$(COMPOSE) logs --tail 50 app migrate localstack; \
	exit 1

compose-down:
	$(COMPOSE) down --volumes

clean:
	rm -rf $(VENV) $(INFRA_VENV) $(BENCH_VENV) .dev .pytest_cache .ruff_cache .mypy_cache infra/*/node_modules
