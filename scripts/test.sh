#!/usr/bin/env bash
# Installs what the tests need (Debian's chromium included) and runs the whole suite.
# Uses the first python3 on PATH (.ci/run puts a fresh virtualenv's there).
set -euo pipefail
cd "$(dirname "$0")/.."
# chromium for the page tests; prometheus (promtool and the server) for the metrics and
# Grafana-dashboard tests.
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# The compiled-engine test builds a wheel without build isolation: it needs the build
# requirements of pyproject.toml in this interpreter (a fresh Python has setuptools 65
# and no wheel, and a fresh virtualenv an old pip).
python3 -m pip install -q --disable-pip-version-check --upgrade pip
python3 -m pip install -q --disable-pip-version-check 'setuptools>=68' wheel 'mypy>=2.4'
python3 -m pip install -q --disable-pip-version-check -e '.[test,dask]'
python3 -m ruff check .
python3 -m mypy
python3 -m pytest -q -m "not slow" "$@"
