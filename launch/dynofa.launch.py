"""One perception workload with the resource manager, platform monitor and frequency actuator.

    ros2 launch dynofa_ros dynofa.launch.py                       # synthetic camera, simulated platform
    ros2 launch dynofa_ros dynofa.launch.py camera:=false image:=/camera/image_raw simulated:=false
    ros2 launch dynofa_ros dynofa.launch.py transport:=compressed # camera and perception on image/compressed
    ros2 launch dynofa_ros dynofa.launch.py --show-args           # every argument, with its description
Retarget at run time:
    ros2 topic pub --once /performance_target dynofa_ros/msg/PerformanceTarget \
        "{workload: front_camera, max_latency_ms: 5.0}"

Nodes, parameters and arguments come from config/stack.yaml (stack `dynofa`), which the tests' process
launcher reads too. Perception and the resource manager are lifecycle nodes: launch configures, then
activates them.
"""
from launch import LaunchDescription

from dynofa_ros.process_launch import launch_entities


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription(launch_entities('dynofa'))
