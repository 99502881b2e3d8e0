"""Shared fixtures: an isolated ROS graph of real node processes and an in-test rclpy probe."""
from __future__ import annotations

import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _check_install_space() -> None:
    """Tests run against the colcon install; the source folder has no msg/ and must not shadow it."""
    import dynofa_ros
    try:
        import dynofa_ros.msg  # noqa: F401
    except ImportError as exc:
        raise pytest.UsageError(
            f'dynofa_ros imports from {dynofa_ros.__file__} without its generated messages. '
            'Run `bash scripts/setup_env.sh && source ws/env.sh`, then `pytest` '
            '(not `python -m pytest`, which puts the source folder first on sys.path).') from exc


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get('AMENT_PREFIX_PATH'):
        _check_install_space()
    # The in-test probe must discover like the node processes: localhost only (domain set per graph).
    from dynofa_ros.process_launch import isolated_ros_env
    for key in ('ROS_LOCALHOST_ONLY', 'ROS_AUTOMATIC_DISCOVERY_RANGE'):
        os.environ.pop(key, None)
        if key in (env := isolated_ros_env(0)):
            os.environ[key] = env[key]


LEGACY = REPO / 'test' / 'fixtures' / 'legacy'  # the retired 16-32 px supernet, its tables and BN files


def legacy_table(name: str = 'fmnist_ofa_mbv3') -> Path:
    """A retired table (7 hand-picked points of the 16-32 px supernet; `_cpu`: an early search): small and
    slow enough to make frame timing in node tests easy, and the older table format to keep loading."""
    return LEGACY / f'{name}.yaml'


def tiny_supernet_file(folder: Path, family: str, config: dict) -> tuple[Path, object]:
    """A small supernet of ``family`` built with seed 0, saved in the project format: (path, supernet)."""
    import torch

    from dynofa_ros.supernet.checkpoint import build_supernet, save_supernet

    torch.manual_seed(0)
    torch.set_num_threads(1)
    sn = build_supernet(family, config)
    path = folder / f"tiny_{family}.pt"
    save_supernet(sn, path)
    return path, sn


class Probe:
    """An rclpy node in the test process, on the graph's domain, collecting messages by topic."""

    def __init__(self, domain_id: int) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node('test_probe', context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.messages: dict[str, list] = defaultdict(list)
        self.lock = threading.Lock()
        self._stop = False
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop and self.context.ok():
            self.executor.spin_once(timeout_sec=0.05)

    def subscribe(self, msg_type, topic: str, qos=10) -> None:
        def store(msg, topic=topic):
            with self.lock:
                self.messages[topic].append((time.monotonic(), time.time(), msg))
        self.node.create_subscription(msg_type, topic, store, qos)

    def publisher(self, msg_type, topic: str, qos=10, latched: bool = False):
        """``latched``: the decision topics' transient_local profile (their subscribers require it)."""
        if latched:
            from dynofa_ros.nodes.qos import latched_qos
            qos = latched_qos(qos)
        return self.node.create_publisher(msg_type, topic, qos)

    def received(self, topic: str) -> list:
        with self.lock:
            return [msg for _, _, msg in self.messages[topic]]

    def since(self, topic: str, t0: float) -> list:
        with self.lock:
            return [msg for t, _, msg in self.messages[topic] if t >= t0]

    def arrivals(self, topic: str) -> list[tuple[float, object]]:
        """(wall-clock receipt time, message) pairs, to compare with header stamps."""
        with self.lock:
            return [(wall, msg) for _, wall, msg in self.messages[topic]]

    def wait_for(self, predicate: Callable[[], object], timeout: float, what: str = 'condition'):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.02)
        raise AssertionError(f'timed out after {timeout:.1f} s waiting for {what}')

    def call(self, srv_type, name: str, request, timeout: float = 30.0, resend_s: float | None = 2.0):
        """Call service `name` and wait for the reply (the service must come up within `timeout`).

        A fresh client can see the service before the server sees the client's reply reader; Fast DDS then
        drops the reply ("client will not receive response"). So a request that is safe to repeat is sent
        again every `resend_s` until one reply arrives; `resend_s=None` sends it once.
        """
        client = self.node.create_client(srv_type, name)
        assert client.wait_for_service(timeout_sec=timeout), f'{name} not up'
        return self._request(client, name, request, timeout, resend_s)

    def _request(self, client, name: str, request, timeout: float, resend_s: float | None):
        deadline = time.monotonic() + timeout
        while True:
            future = client.call_async(request)
            left = deadline - time.monotonic()
            try:
                self.wait_for(future.done, max(left if resend_s is None else min(resend_s, left), 0.0))
                return future.result()
            except AssertionError:
                if resend_s is None or time.monotonic() >= deadline:
                    raise AssertionError(f'timed out after {timeout:.1f} s waiting for {name} reply') from None

    def lifecycle_state(self, node: str) -> str:
        """The managed node's state label (unconfigured, inactive, active, ...)."""
        from lifecycle_msgs.srv import GetState
        return self.call(GetState, f'/{node}/get_state', GetState.Request()).current_state.label

    def lifecycle_change(self, node: str, transition: str, timeout: float = 90.0) -> bool:
        """Trigger configure / activate / deactivate / cleanup on a managed node; whether it succeeded.

        A transition must not be sent twice, so the request goes once, on a client created before a
        get_state round trip (which may be repeated), so that its discovery has settled.
        """
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState
        ids = {'configure': Transition.TRANSITION_CONFIGURE, 'activate': Transition.TRANSITION_ACTIVATE,
               'deactivate': Transition.TRANSITION_DEACTIVATE, 'cleanup': Transition.TRANSITION_CLEANUP}
        request = ChangeState.Request(transition=Transition(id=ids[transition]))
        name = f'/{node}/change_state'
        client = self.node.create_client(ChangeState, name)
        assert client.wait_for_service(timeout_sec=timeout), f'{name} not up'
        self.lifecycle_state(node)  # a round trip that gives this client's reply reader time to be matched
        return self._request(client, name, request, timeout, resend_s=None).success

    def set_parameters(self, node: str, values: dict, timeout: float = 10.0):
        """Call /<node>/set_parameters (idempotent, so resent if a reply is lost); its first result."""
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter
        request = SetParameters.Request(
            parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()])
        return self.call(SetParameters, f'/{node}/set_parameters', request, timeout).results[0]

    def close(self) -> None:
        self._stop = True
        self._thread.join(2.0)
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


@pytest.fixture
def ros_graph(request, tmp_path):
    """Real node processes on a private localhost-only domain, always stopped; logs shown on failure."""
    pytest.importorskip('rclpy')
    from dynofa_ros.process_launch import RosGraph
    graph = RosGraph(log_dir=tmp_path / 'logs')
    yield graph
    graph.stop_all()
    report = getattr(request.node, 'rep_call', None)
    if report is not None and report.failed:
        print(graph.dump_logs())


@pytest.fixture
def probe(ros_graph):
    p = Probe(ros_graph.domain_id)
    yield p
    p.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f'rep_{report.when}', report)
    return report
