#!/usr/bin/env bash
# Sets everything up (scripts/setup_env.sh) and runs the demo: camera, perception, resource manager and
# platform monitor as separate ROS 2 processes, retargeted and loaded by a real co-running CPU load.
#   bash scripts/demo.sh [--duration SECONDS]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup_env.sh"
set +u
# shellcheck disable=SC1091
source "$ROOT/ws/env.sh"
set -u
cd /   # import dynofa_ros from the install space, never the source folder
exec python "$ROOT/scripts/demo.py" "$@"
