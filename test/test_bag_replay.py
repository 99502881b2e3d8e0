"""Replaying a rosbag2 with /clock: the perception node (use_sim_time) serves the bag's frames."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import shipped_table

pytestmark = pytest.mark.ros

BAG_START_S = 5000


def write_image_bag(path, frames: int = 15, period_s: float = 0.1) -> list[int]:
    """A sqlite3 rosbag2 of rgb8 images stamped from BAG_START_S; returns the stamps in ns."""
    from rclpy.serialization import serialize_message
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_typestore

    from dynofa_ros.nodes.image_conversion import array_to_image
    typestore = get_typestore(Stores.ROS2_HUMBLE)
    pixels = np.random.default_rng(1).integers(0, 256, size=(60, 80, 3), dtype=np.uint8)
    stamps = []
    with Writer(path, version=8) as writer:
        images = writer.add_connection('/image', 'sensor_msgs/msg/Image', typestore=typestore)
        for i in range(frames):
            stamp_ns = int((BAG_START_S + i * period_s) * 1e9)
            msg = array_to_image(pixels, 'rgb8')
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
            msg.header.frame_id = f'bag/{i}'
            writer.write(images, stamp_ns, serialize_message(msg))
            stamps.append(stamp_ns)
    return stamps


def test_bag_replay_with_sim_time(ros_graph, probe, tmp_path):
    from dynofa_ros.msg import InferenceResult, WorkloadStatus
    stamps = write_image_bag(tmp_path / 'bag')
    probe.subscribe(InferenceResult, 'inference_result', qos=50)
    probe.subscribe(WorkloadStatus, 'workload_status')
    ros_graph.start('perception_node', parameters={
        'workload': 'replay', 'operating_points': str(shipped_table()), 'threads': 1,
        'use_sim_time': True, 'qos_reliability': 'reliable', 'qos_depth': 20, 'status_rate_hz': 5.0})
    # The node must be up before the bag starts: wait for its first status (published on sim time).
    probe.wait_for(lambda: probe.received('workload_status'), 90, 'the perception node')
    player = ros_graph.start('bag_player', parameters={'bag': str(tmp_path / 'bag'), 'use_sim_time': False})
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
