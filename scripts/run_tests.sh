#!/usr/bin/env bash
# Sets everything up (scripts/setup_env.sh) and runs the test suite against the colcon install space.
#   bash scripts/run_tests.sh [--distro kilted|jazzy] [pytest args]   (or DYNOFA_ROS_DISTRO=jazzy)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/ros_distro.sh
source "$ROOT/scripts/ros_distro.sh"
dynofa_pick_distro "$@"
bash "$ROOT/scripts/setup_env.sh" --distro "$DISTRO"
set +u
# shellcheck disable=SC1091
source "$WS/env.sh"
set -u
cd "$ROOT"
# `pytest`, not `python -m pytest`: the latter puts the source folder (no generated msg/) on sys.path.
exec pytest "${REST_ARGS[@]}"
