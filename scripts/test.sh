#!/usr/bin/env bash
# Run every check CI runs: lint, format, types, then the test suite.
source "$(dirname "$0")/_env.sh"
ruff check .
ruff format --check .
mypy
python -m pytest "$@"
