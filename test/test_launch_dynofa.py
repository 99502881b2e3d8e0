"""launch_testing: `ros2 launch dynofa_ros dynofa.launch.py` brings the whole stack up on a private domain,
launch configures and activates the lifecycle nodes, perception serves frames, and every process exits 0.

Skips where launch_testing is not installed (ROS from PyPI); there test_stack_config.py starts the same
config/stack.yaml nodes and parameters as real processes, and test_system_slice.py covers the behaviour.
Run it under upstream launch with `launch_testing` (or pytest < 9 with its plugin) on the PYTHONPATH.
"""
import os
import time
import unittest

import pytest

launch_testing = pytest.importorskip(
    'launch_testing', reason='launch_testing is not installed (PyPI ROS); test_stack_config covers the stack')
import launch  # noqa: E402
import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
from ament_index_python.packages import get_package_share_directory  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402

from dynofa_ros.process_launch import free_domain_id, isolated_ros_env  # noqa: E402

MANAGED = ('/perception', '/resource_manager')
ROS_VARIABLES = ('ROS_DOMAIN_ID', 'ROS_AUTOMATIC_DISCOVERY_RANGE', 'ROS_LOCALHOST_ONLY')


def _isolate(domain_id: int) -> None:
    """This process (launch's own rclpy node, the probe) and the launched nodes share a private domain."""
    env = isolated_ros_env(domain_id)
    for key in ROS_VARIABLES:
        if key in env:
            os.environ[key] = env[key]
        else:
            os.environ.pop(key, None)


@pytest.mark.launch_test
def generate_test_description():
    domain_id = free_domain_id()
    _isolate(domain_id)
    path = os.path.join(get_package_share_directory('dynofa_ros'), 'launch', 'dynofa.launch.py')
    stack = launch.actions.IncludeLaunchDescription(PythonLaunchDescriptionSource(path),
                                                    launch_arguments={'dry_run': 'true'}.items())
    return launch.LaunchDescription([stack, launch_testing.actions.ReadyToTest()]), {'domain_id': domain_id}


class TestStackServes(unittest.TestCase):
    def test_lifecycle_nodes_become_active_and_perception_serves(self, domain_id):
        import rclpy
        from lifecycle_msgs.msg import State
        from rclpy.executors import SingleThreadedExecutor
        from lifecycle_msgs.srv import GetState

        from dynofa_ros.msg import InferenceResult, SubnetDecision
        context = rclpy.Context()
        rclpy.init(context=context, domain_id=domain_id)
        node = rclpy.create_node('launch_test_probe', context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        seen = {'results': 0, 'decisions': 0}
        node.create_subscription(InferenceResult, '/inference_result',
                                 lambda _: seen.__setitem__('results', seen['results'] + 1), 10)
        node.create_subscription(SubnetDecision, '/subnet_decision',
                                 lambda _: seen.__setitem__('decisions', seen['decisions'] + 1), 10)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not (seen['results'] and seen['decisions']):
                executor.spin_once(timeout_sec=0.1)
            self.assertTrue(seen['results'], 'no InferenceResult from the launched perception node')
            self.assertTrue(seen['decisions'], 'no SubnetDecision from the launched resource manager')
            for name in MANAGED:
                client = node.create_client(GetState, f'{name}/get_state')
                self.assertTrue(client.wait_for_service(timeout_sec=10), f'{name} is not a lifecycle node')
                for _ in range(5):  # resent: Fast DDS may drop a reply to a client it has not yet matched
                    future = client.call_async(GetState.Request())
                    executor.spin_until_future_complete(future, timeout_sec=2)
                    if future.done():
                        break
                self.assertEqual(future.result().current_state.id, State.PRIMARY_STATE_ACTIVE, name)
        finally:
            executor.shutdown()
            node.destroy_node()
            context.try_shutdown()


@launch_testing.post_shutdown_test()
class TestCleanShutdown(unittest.TestCase):
    def test_every_process_exits_0_without_a_traceback(self, proc_info, proc_output):
        launch_testing.asserts.assertExitCodes(proc_info)  # 0 only: no SIGTERM/SIGKILL escalation
        for process in proc_output.processes():
            text = ''.join(line.text.decode(errors='replace') for line in proc_output[process])
            self.assertNotIn('Traceback', text, process)
