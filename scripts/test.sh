#!/usr/bin/env bash
# The test command (README and CI run exactly this): install, start PostgreSQL on loopback, run pytest on
# SQLite and PostgreSQL, real models and real servers included. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql)
command -v chromium >/dev/null 2>&1 || need+=(chromium chromium-driver)
dpkg -s fonts-ipafont-gothic >/dev/null 2>&1 || need+=(fonts-ipafont-gothic)  # else Japanese renders as boxes
if [ ${#need[@]} -gt 0 ]; then
  echo "installing system packages: ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Keep every cache inside the checkout: models converted for the tests, and pip's cache under CI.
export EMPLIFAI_HOME=${EMPLIFAI_HOME:-$PWD/.cache/emplifai}
if [ -n "${CI:-}" ]; then export PIP_CACHE_DIR=$PWD/.cache/pip; fi

bash scripts/install.sh dev
# llama.cpp's batching llama-server for the tests that need a real one (built once, cached in .cache/)
EMPLIFAI_LLAMA_SERVER=$(PYTHON=.venv/bin/python bash scripts/llama-server.sh build)
export EMPLIFAI_LLAMA_SERVER
EMPLIFAI_TEST_PG_URL=$(bash scripts/pg.sh start)
export EMPLIFAI_TEST_PG_URL
trap 'bash scripts/pg.sh stop' EXIT
.venv/bin/python -m pytest "$@"
