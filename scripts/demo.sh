#!/usr/bin/env bash
# Run the demo against the embedded Apollo test server (sets itself up on first run).
source "$(dirname "$0")/_env.sh"
python examples/demo.py "$@"
