"""Every executable stops cleanly: exit 0 within 2 s of SIGINT (or SIGTERM), no traceback on a second
signal or on a signal during start-up, and a broken parameter is one FATAL line with exit 1.

Real node processes on a private localhost-only domain (the `ros_graph` fixture).
"""
from __future__ import annotations

import os
import signal
import time

import pytest

pytestmark = pytest.mark.ros

EXIT_WITHIN_S = 2.0
# executable -> (parameters, a topic it publishes once it is up and serving, its message type name)
NODES = {
    'perception_node': ({}, 'workload_status', 'WorkloadStatus'),
    'resource_manager_node': ({}, 'subnet_decision', 'SubnetDecision'),
    'platform_monitor_node': ({'simulated': True}, 'platform_load', 'PlatformLoad'),
    'frequency_actuator_node': ({'dry_run': True}, None, None),
    'synthetic_camera': ({'rate_hz': 10.0}, 'image', 'Image'),
}


def _message_type(name: str):
    if name == 'Image':
        from sensor_msgs.msg import Image
        return Image
    import dynofa_ros.msg
    return getattr(dynofa_ros.msg, name)


def _wait_until_up(probe, node, executable: str) -> None:
    parameters, topic, type_name = NODES[executable]
    if topic is None:
        probe.wait_for(lambda: executable in probe.node.get_node_names(), 60, f'{executable} in the graph')
        time.sleep(1.0)
        return
    probe.wait_for(lambda: probe.received(topic) or not node.running(), 90, f'{executable} publishing {topic}')
    assert node.running(), node.output()


def _signal_and_time(node, signals: list[int], gap_s: float = 0.05) -> tuple[int | None, float]:
    t0 = time.monotonic()
    for sig in signals:
        os.killpg(node.process.pid, sig)
        time.sleep(gap_s)
    try:
        code = node.process.wait(10)
    except Exception:  # noqa: BLE001 - reported below as a hang
        code = None
    return code, time.monotonic() - t0


@pytest.mark.parametrize('executable', sorted(NODES))
def test_exits_zero_within_two_seconds_of_sigint(ros_graph, probe, executable):
    parameters, topic, type_name = NODES[executable]
    if topic:
        probe.subscribe(_message_type(type_name), topic)
    node = ros_graph.start(executable, name=executable, parameters=parameters)
    _wait_until_up(probe, node, executable)
    code, took = _signal_and_time(node, [signal.SIGINT])
    out = node.output()
    assert code == 0, f'exit {code}\n{out[-2000:]}'
    assert took < EXIT_WITHIN_S, f'{executable} took {took:.2f} s to exit'
    assert 'Traceback' not in out and 'context is invalid' not in out, out[-2000:]


@pytest.mark.parametrize('signals', [[signal.SIGINT, signal.SIGINT, signal.SIGINT], [signal.SIGTERM]],
                         ids=['triple-sigint', 'sigterm'])
def test_repeated_signals_and_sigterm_exit_cleanly(ros_graph, probe, signals):
    from dynofa_ros.msg import WorkloadStatus
    probe.subscribe(WorkloadStatus, 'workload_status')
    node = ros_graph.start('perception_node', name='perception_node')
    _wait_until_up(probe, node, 'perception_node')
    code, took = _signal_and_time(node, signals, gap_s=0.01)
    out = node.output()
    assert code == 0 and took < EXIT_WITHIN_S, f'exit {code} after {took:.2f} s\n{out[-2000:]}'
    assert 'Traceback' not in out and 'terminate called' not in out, out[-2000:]


@pytest.mark.parametrize('delay_s', [0.2, 1.0, 2.5])
def test_sigint_during_start_up_exits_zero_without_traceback(ros_graph, delay_s):
    node = ros_graph.start('perception_node', name='perception_node')
    time.sleep(delay_s)
    code, took = _signal_and_time(node, [signal.SIGINT])
    out = node.output()
    assert code == 0, f'exit {code}\n{out[-2000:]}'
    assert took < EXIT_WITHIN_S and 'Traceback' not in out, out[-2000:]


@pytest.mark.parametrize('executable,parameters', [
    ('perception_node', {'top_k': 'three'}),                  # rclpy InvalidParameterTypeException
    ('resource_manager_node', {'workloads': 'front_camera'}),  # a string where a string array belongs
    ('synthetic_camera', {'rate_hz': 'fast'}),
])
def test_broken_parameter_is_one_fatal_line_and_exit_1(ros_graph, executable, parameters):
    node = ros_graph.start(executable, name=executable, parameters=parameters)
    code = node.process.wait(60)
    out = node.output()
    fatal = [line for line in out.splitlines() if '[FATAL]' in line]
    assert code == 1, out[-2000:]
    assert len(fatal) == 1 and 'cannot start' in fatal[0], out[-2000:]
    assert 'Traceback' not in out, out[-2000:]
