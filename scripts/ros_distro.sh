# Sourced by setup_env.sh and run_tests.sh: which ROS 2 distro, and where its venv and workspace live.
# dynofa_pick_distro [--distro NAME | --distro=NAME] [other args...] sets DISTRO, VENV, WS and
# REST_ARGS (the arguments that were not --distro).
dynofa_pick_distro() {
  DISTRO="${DYNOFA_ROS_DISTRO:-${ROS_DISTRO:-}}"
  REST_ARGS=()
  while [ "$#" -gt 0 ]; do
    case "$1" in
      --distro) DISTRO="${2:?--distro needs a name}"; shift 2 ;;
      --distro=*) DISTRO="${1#--distro=}"; shift ;;
      *) REST_ARGS+=("$1"); shift ;;
    esac
  done
  if [ -z "$DISTRO" ]; then
    DISTRO=kilted
    for candidate in kilted jazzy humble; do
      if [ -f "/opt/ros/$candidate/setup.bash" ]; then DISTRO="$candidate"; break; fi
    done
  fi
  DISTRO="$(printf '%s' "$DISTRO" | tr '[:upper:]' '[:lower:]')"
  # Outside the source tree: CMake rejects exported include paths that lie inside it.
  if [ "$DISTRO" = kilted ]; then
    VENV="${DYNOFA_VENV:-$HOME/.cache/dynofa_ros/venv}"
    WS="$ROOT/ws"
  else
    VENV="${DYNOFA_VENV:-$HOME/.cache/dynofa_ros/venv-$DISTRO}"
    WS="$ROOT/ws/$DISTRO"
  fi
  export DYNOFA_ROS_DISTRO="$DISTRO"
}
