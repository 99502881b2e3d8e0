"""Replaying a real early rosbag2 with /clock: the perception node (use_sim_time) serves the bag's frames."""
from __future__ import annotations

import pytest

from conftest import legacy_table

pytestmark = pytest.mark.ros

BAG_START_S = 5000


def write_image_bag(path) -> list[int]:
    """The bag the issue could not play: early rosbag2 sqlite3, no metadata.yaml, `sensor_msgs/Image`,
    15 frames of 640x480 bgr8 at 10 Hz from BAG_START_S; returns the stamps in ns."""
    from bag_fixtures import IMAGE, recording, write_early_bag
    rec = recording(frames=15, period_ns=100_000_000, start_ns=BAG_START_S * 1_000_000_000, topics=(IMAGE,))
    write_early_bag(path, rec)
    return [stamp for _, stamp, _ in rec.messages]


def test_bag_replay_with_sim_time(ros_graph, probe, tmp_path):
    from dynofa_ros.msg import InferenceResult, WorkloadStatus
    stamps = write_image_bag(tmp_path / 'bag')
    probe.subscribe(InferenceResult, 'inference_result', qos=50)
    probe.subscribe(WorkloadStatus, 'workload_status')
    ros_graph.start('perception_node', parameters={
        'workload': 'replay', 'operating_points': str(legacy_table()), 'threads': 1,
        'use_sim_time': True, 'qos_reliability': 'reliable', 'qos_depth': 20, 'status_rate_hz': 5.0})
    # The node must be up before the bag starts: wait for its first status (published on sim time).
    probe.wait_for(lambda: probe.received('workload_status'), 90, 'the perception node')
    player = ros_graph.start('bag_player', parameters={'bag': str(tmp_path / 'bag'), 'use_sim_time': False},
                             remappings={'/camera/image': '/image'})
    probe.wait_for(lambda: not player.running(), 60, 'the bag to finish')
    assert player.process.returncode == 0, player.output()
    results = probe.wait_for(lambda: len(probe.received('inference_result')) >= 10 and
                             probe.received('inference_result'), 20, 'results of the replayed frames')
    seen = {r.header.stamp.sec * 1_000_000_000 + r.header.stamp.nanosec for r in results}
    assert seen <= set(stamps)
    assert all(r.header.frame_id.startswith('bag/') for r in results)
    assert 'replayed 15 messages' in player.output()
    # Status stamps follow the bag's /clock, not the wall clock.
    late = probe.wait_for(lambda: [s for s in probe.received('workload_status')
                                   if s.header.stamp.sec >= BAG_START_S], 10, 'a status on bag time')
    assert late[-1].header.stamp.sec < BAG_START_S + 10
