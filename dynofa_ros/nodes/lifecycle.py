"""The one way every dynofa_ros executable starts, spins and stops a node."""
from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node

N = TypeVar('N', bound=Node)


def run_node(make_node: Callable[[], N], name: str, args: list[str] | None = None,
             on_exit: Callable[[N], None] | None = None) -> None:
    """Spin `make_node()` until Ctrl-C or shutdown, then clean up.

    A broken configuration found while building the node (bad table, checkpoint, profile, parameter)
    becomes one fatal log line and exit code 1 instead of a traceback.
    """
    rclpy.init(args=args)
    try:
        node = make_node()
    except (ValueError, KeyError, OSError) as exc:
        rclpy.logging.get_logger(name).fatal(f'cannot start: {type(exc).__name__}: {exc}')
        rclpy.try_shutdown()
        raise SystemExit(1) from None
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if on_exit is not None:
            on_exit(node)
        node.destroy_node()
        rclpy.try_shutdown()
