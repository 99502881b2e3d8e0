"""launch_testing: dynofa.launch.py brings the whole stack up and the perception node serves frames.

Skips where launch_testing is not installed (ROS from PyPI); test_system_slice.py covers the same
behaviour there with the same executables started as real processes.
"""
import os
import time
import unittest

import pytest

launch_testing = pytest.importorskip(
    'launch_testing', reason='launch_testing is not installed (PyPI ROS); test_system_slice covers it')
import launch  # noqa: E402
import launch_testing.asserts  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
from ament_index_python.packages import get_package_share_directory  # noqa: E402


@pytest.mark.launch_test
def generate_test_description():
    path = os.path.join(get_package_share_directory('dynofa_ros'), 'launch', 'dynofa.launch.py')
    stack = launch.actions.IncludeLaunchDescription(PythonLaunchDescriptionSource(path),
                                                    launch_arguments={'dry_run': 'true'}.items())
    return launch.LaunchDescription([stack, launch_testing.actions.ReadyToTest()])


class TestStackServes(unittest.TestCase):
    def test_perception_status_reports_processed_frames(self):
        import rclpy
        from dynofa_ros.msg import WorkloadStatus
        rclpy.init()
        node = rclpy.create_node('launch_test_probe')
        seen = []
        node.create_subscription(WorkloadStatus, 'workload_status', seen.append, 10)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not any(s.frames_processed for s in seen):
            rclpy.spin_once(node, timeout_sec=0.1)
        node.destroy_node()
        rclpy.shutdown()
        self.assertTrue(any(s.frames_processed for s in seen), 'no processed frames reported')


@launch_testing.post_shutdown_test()
class TestCleanShutdown(unittest.TestCase):
    def test_exit_codes(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info, allowable_exit_codes=[0, -2, -15])
