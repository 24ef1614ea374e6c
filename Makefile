# The two commands a newcomer runs: `make run` and `make test`. Both build their environment.
PYTHON ?= python3
UV_VERSION := 0.13.8
UV := .tools/bin/uv
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test bench lint venv clean

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# Compiled at install, the libraries and callgate's own modules: a process that may not write
# its bytecode (PYTHONDONTWRITEBYTECODE; the systemd unit's read-only tree) would otherwise
# compile every module it imports at every start (`callgate --help` took 3.1 s instead of 1.1
# s; every service and CLI process the tests start paid it).
venv: $(UV)
	$(UV) sync --locked --quiet --compile-bytecode
	$(BIN)/python -m compileall -q src

# The service on its embedded defaults: SQLite and a simulated PBX, port 8018.
run: venv
	CALLGATE_DEMO=1 $(BIN)/callgate db upgrade
	CALLGATE_DEMO=1 $(BIN)/callgate serve

lint: venv
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

# Every test. Tests that need PostgreSQL, Redis, sshd or nginx skip when those are missing,
# unless CALLGATE_REQUIRE_SERVICES=1 (CI), which makes them fail instead. The script installs
# the Debian packages the tests use (sshd, nginx, chromium) when run as root.
test: venv
	bash scripts/ensure-packages.sh
	$(MAKE) --no-print-directory lint
	$(BIN)/pytest

# The benchmark: the seed's way against callgate, in the same run. See README.
bench: venv
	bash scripts/ensure-packages.sh sshpass
	$(BIN)/python -m bench

clean:
	rm -rf .tools $(VENV) .pytest_cache .mypy_cache .ruff_cache callgate.db* asterisk_service.log*
