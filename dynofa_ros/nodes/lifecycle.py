"""The one way every dynofa_ros executable starts, spins and stops a node.

- Start-up: any error while building, configuring or activating a node (bad table, checkpoint, profile,
  parameter, rclpy's ParameterException) becomes ONE fatal log line and exit code 1, never a traceback.
- Managed nodes (`ManagedNode`, a `rclpy.lifecycle.LifecycleNode`) load in `configure`, serve in
  `activate`; with `autostart` (the default) `run_node` takes them through both, so plain `ros2 run`
  works, while `ros2 launch` or a lifecycle manager drives them with `autostart:=false`.
- A node ends the process itself by raising SystemExit(code) from a callback (the bag player, at the
  end of the bag): the same teardown runs and the process exits with that code.
- Shutdown: rclpy's own signal handlers are not installed. The first SIGINT or SIGTERM stops the spin
  loop; the node is deactivated, cleaned up and destroyed while the context is still valid (so nothing
  publishes into a dead context), further signals are ignored, and the process leaves with `os._exit`
  (interpreter finalisation of torch and DDS threads took 4-8 s). A signal during start-up exits 0.
"""
from __future__ import annotations

import os
import signal
import sys
import traceback
from collections.abc import Callable
from typing import TypeVar

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node

from dynofa_ros.nodes.parameters import describe

N = TypeVar('N', bound=Node)
SPIN_PERIOD_S = 0.1  # how often the spin loop notices a stop request
MAX_ERROR_CHARS = 300


class StartupError(RuntimeError):
    """A managed node could not be configured or activated; the message says why."""


class ManagedNode(LifecycleNode):
    """A lifecycle node: subclasses implement `configure`, `activate`, `deactivate`, `cleanup`.

    Each hook is a plain method that raises on failure; the transition then fails with the reason logged
    (and kept in `startup_error` for `run_node`). Parameters are declared in `__init__`, heavy state
    (models, tables, subscriptions, timers) is created in `configure` and released in `cleanup`.
    Publishers made with `create_lifecycle_publisher` publish only while active.
    """

    def __init__(self, node_name: str, **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        self.autostart: bool = self.declare_parameter(
            'autostart', True, describe('Configure and activate at start-up (plain ros2 run). false: wait '
                                        'for lifecycle transitions (ros2 launch, a lifecycle manager).',
                                        read_only=True)).value
        self.startup_error = ''
        self.is_active = False

    # hooks for subclasses
    def configure(self) -> None:
        """Load what serving needs (called on the configure transition)."""

    def activate(self) -> None:
        """Start serving (called after the lifecycle publishers are activated)."""

    def deactivate(self) -> None:
        """Stop serving; the node can be activated again."""

    def cleanup(self) -> None:
        """Free what `configure` loaded."""

    # rclpy transition callbacks
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = self._transition('configure', self.configure)
        if result != TransitionCallbackReturn.SUCCESS:
            self._quietly(self.cleanup)  # release whatever the failed configure created
        return result

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        super().on_activate(state)
        result = self._transition('activate', self.activate)
        self.is_active = result == TransitionCallbackReturn.SUCCESS
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.is_active = False
        result = self._transition('deactivate', self.deactivate)
        super().on_deactivate(state)
        return result

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._transition('cleanup', self.cleanup)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.stop()
        return TransitionCallbackReturn.SUCCESS

    def _transition(self, step: str, hook: Callable[[], None]) -> TransitionCallbackReturn:
        try:
            hook()
        except Exception as exc:  # noqa: BLE001 - a failed transition is reported, the node stays up
            self.startup_error = f'{step} failed: {error_text(exc)}'
            self.get_logger().error(self.startup_error)
            return TransitionCallbackReturn.FAILURE
        return TransitionCallbackReturn.SUCCESS

    def bring_up(self) -> None:
        """configure + activate (autostart); StartupError with the reason when either fails."""
        for trigger in (self.trigger_configure, self.trigger_activate):
            if trigger() != TransitionCallbackReturn.SUCCESS:
                raise StartupError(self.startup_error or f'{trigger.__name__} did not succeed')

    def stop(self) -> None:
        """Deactivate and clean up whatever state the node is in (exit path; never raises)."""
        if self.is_active:
            self.is_active = False
            self._quietly(self.deactivate)
        self._quietly(self.cleanup)

    def _quietly(self, hook: Callable[[], None]) -> None:
        try:
            hook()
        except Exception as exc:  # noqa: BLE001 - on the way out every step runs
            self.get_logger().warning(f'{hook.__name__} during shutdown: {error_text(exc)}')


def error_text(exc: BaseException) -> str:
    """`Type: message` on one line, bounded (error messages may quote user input)."""
    text = ' '.join(f'{type(exc).__name__}: {exc}'.split())
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS - 3] + '...'


class _Stop:
    """SIGINT/SIGTERM: during start-up interrupt it (KeyboardInterrupt); afterwards request a stop once."""

    def __init__(self) -> None:
        self.requested = False
        self.starting = True
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        if self.requested:
            return  # a second signal while stopping changes nothing
        self.requested = True
        if self.starting:
            raise KeyboardInterrupt

    @staticmethod
    def ignore_further() -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)


def _init_rclpy(args: list[str] | None) -> None:
    try:
        from rclpy.signals import SignalHandlerOptions
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    except ImportError:  # very old rclpy: its handlers then stay installed
        rclpy.init(args=args)


def run_node(make_node: Callable[[], N], name: str, args: list[str] | None = None,
             on_exit: Callable[[N], None] | None = None) -> None:
    """Build, (auto)start and spin `make_node()` until SIGINT/SIGTERM or shutdown; never returns."""
    stop = _Stop()
    node: N | None = None
    code = 0
    try:
        _init_rclpy(args)
        node = make_node()
        if isinstance(node, ManagedNode) and node.autostart:
            node.bring_up()
        stop.starting = False
        if not stop.requested:
            _spin(node, stop)
    except KeyboardInterrupt:
        pass  # stopped during start-up: a clean exit, not an error
    except SystemExit as exc:  # a node that finished its job (e.g. the bag player at the end of the bag)
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except ExternalShutdownException:
        pass
    except Exception as exc:  # noqa: BLE001 - start-up boundary: one fatal line
        code = 1
        if stop.starting:
            rclpy.logging.get_logger(name).fatal(f'cannot start: {error_text(exc)}')
        else:
            traceback.print_exc()  # a crash while serving is a bug: keep its traceback
    finally:
        _Stop.ignore_further()
        _tear_down(node, on_exit, name)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _spin(node: Node, stop: _Stop) -> None:
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        while not stop.requested and rclpy.ok():
            executor.spin_once(timeout_sec=SPIN_PERIOD_S)
    finally:
        executor.remove_node(node)
        executor.shutdown(timeout_sec=0.5)


def _tear_down(node: Node | None, on_exit: Callable | None, name: str) -> None:
    """Stop the node's own work, then destroy it, while the context is still valid."""
    try:
        if node is not None:
            if on_exit is not None:
                on_exit(node)
            if isinstance(node, ManagedNode):
                node.stop()
            node.destroy_node()
    except Exception as exc:  # noqa: BLE001 - shutdown must finish
        rclpy.logging.get_logger(name).error(f'during shutdown: {error_text(exc)}')
    finally:
        rclpy.try_shutdown()
