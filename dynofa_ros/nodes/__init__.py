"""Thin rclpy nodes over the ROS-free core; the only subpackage that imports rclpy."""
import os
import signal


def exit_quietly_until_started() -> None:
    """Installed by every entry script before the heavy imports: a SIGINT or SIGTERM that arrives
    while the node's modules load (e.g. launch stopping during start-up) ends the process with exit 0
    instead of a KeyboardInterrupt traceback. `run_node` replaces these handlers with its own."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: os._exit(0))
