"""Two concurrent perception workloads sharing one resource manager (the paper's multi-DNN case).

Each workload lives in its own namespace (its camera, image, results and overlay stay there); the
control-plane topics (targets, decisions, status) are global so one manager sees and steers both. The
platform monitor and frequency actuator run once.
    ros2 launch dynofa_ros multi_workload.launch.py                   # synthetic cameras, simulated platform
    ros2 launch dynofa_ros multi_workload.launch.py camera:=false simulated:=false \
        front_camera_image:=/front/image_raw rear_camera_image:=/rear/image_raw
    ros2 topic pub --once /performance_target dynofa_ros/msg/PerformanceTarget \
        "{workload: rear_camera, max_latency_ms: 4.0, priority: 0}"
On a robot, multi_workload_robot.launch.py has the robot's defaults. Nodes, parameters and arguments
come from config/stack.yaml (stack `multi_workload`).
"""
from launch import LaunchDescription

from dynofa_ros.process_launch import launch_entities


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription(launch_entities('multi_workload'))
