"""The perception node as a managed (lifecycle) node, driven through its lifecycle services.

A real process started with autostart:=false; the probe calls /<node>/change_state and /<node>/get_state
(lifecycle_msgs) like a lifecycle manager or `ros2 launch` would, and checks what the node does in each
state: nothing is served before activation or after deactivation, and a broken table fails `configure`
with the reason while the node stays up.
"""
from __future__ import annotations

import time

import pytest

from conftest import legacy_table
from test_perception_node import _image_from_dataset, _raw, _result_for

from dynofa_ros.operating_points import load_table

pytestmark = pytest.mark.ros

NODE = 'perception_lc'
QUIET_S = 1.5  # how long "no results" is watched for while frames keep arriving


def state(probe, node: str = NODE) -> str:
    return probe.lifecycle_state(node)


def change(probe, transition: str, node: str = NODE) -> bool:
    return probe.lifecycle_change(node, transition)


def _start(ros_graph, **params):
    parameters = {'workload': 'lc', 'operating_points': str(legacy_table()), 'threads': 1,
                  'status_rate_hz': 10.0, 'autostart': False, 'qos_reliability': 'reliable', 'qos_depth': 10,
                  **params}
    return ros_graph.start('perception_node', name=NODE, parameters=parameters)


def _no_results_while_sending(probe, images, rgb, first: int) -> None:
    """Frames keep arriving for QUIET_S, and none of them is answered."""
    before = len(probe.received('inference_result'))
    for i in range(first, first + 10):
        images.publish(_raw(rgb, 'rgb8', i))
        time.sleep(QUIET_S / 10)
    time.sleep(0.5)
    assert len(probe.received('inference_result')) == before


def _serve_one(probe, images, rgb, i: int, timeout: float = 60.0):
    """Publish frame i until its result comes back (the subscription may still be matching)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        images.publish(_raw(rgb, 'rgb8', i))
        try:
            return _result_for(probe, i, timeout=1.0)
        except AssertionError:
            continue
    raise AssertionError(f'frame {i} was never served')


def test_each_lifecycle_state_does_what_it_says(ros_graph, probe):
    from sensor_msgs.msg import Image

    from dynofa_ros.msg import InferenceResult, WorkloadStatus
    node = _start(ros_graph)
    probe.subscribe(InferenceResult, 'inference_result', qos=100)
    probe.subscribe(WorkloadStatus, 'workload_status')
    images = probe.publisher(Image, 'image')
    rgb = _image_from_dataset(size=64)

    assert state(probe) == 'unconfigured'
    assert 'loaded' not in node.output()  # nothing heavy before configure
    _no_results_while_sending(probe, images, rgb, 1)

    assert change(probe, 'configure') and state(probe) == 'inactive'
    assert f'loaded {len(load_table(legacy_table()).points)} operating points' in node.output()
    _no_results_while_sending(probe, images, rgb, 20)
    assert not probe.received('workload_status')  # lifecycle publishers are off while inactive

    assert change(probe, 'activate') and state(probe) == 'active'
    assert _serve_one(probe, images, rgb, 40).workload == 'lc'
    probe.wait_for(lambda: probe.received('workload_status'), 10, 'a status while active')

    assert change(probe, 'deactivate') and state(probe) == 'inactive'
    time.sleep(0.3)  # results already in flight
    _no_results_while_sending(probe, images, rgb, 60)

    assert change(probe, 'cleanup') and state(probe) == 'unconfigured'
    assert 'model freed' in node.output()
    _no_results_while_sending(probe, images, rgb, 80)

    assert change(probe, 'configure') and change(probe, 'activate')  # and it comes back
    _serve_one(probe, images, rgb, 100)
    out = node.output()
    assert node.running() and 'Traceback' not in out, out[-2000:]
    assert '[ERROR]' not in out and '[WARN]' not in out, out[-2000:]  # inactive frames are no problem


def test_a_broken_table_fails_configure_with_the_reason_and_the_node_stays_up(ros_graph, probe, tmp_path):
    bad_table = tmp_path / 'table.yaml'
    bad_table.write_text('version: 7\npoints: []\n')
    node = _start(ros_graph, operating_points=str(bad_table))
    assert state(probe) == 'unconfigured'
    assert not change(probe, 'configure')
    assert state(probe) == 'unconfigured'
    out = node.output()
    assert 'configure failed' in out and 'missing field' in out and 'Traceback' not in out, out[-2000:]
    time.sleep(0.5)
    assert node.running()
    assert node.stop() == 0  # and it still shuts down cleanly
