#!/usr/bin/env bash
# Sets everything up (scripts/setup_env.sh) and runs the test suite against the colcon install space.
#   bash scripts/run_tests.sh [pytest args]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup_env.sh"
set +u
# shellcheck disable=SC1091
source "$ROOT/ws/env.sh"
set -u
cd "$ROOT"
# `pytest`, not `python -m pytest`: the latter puts the source folder (no generated msg/) on sys.path.
exec pytest "$@"
