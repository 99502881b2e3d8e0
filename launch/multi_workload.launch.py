"""Two concurrent perception workloads sharing one resource manager (the paper's multi-DNN case).

Each workload lives in its own namespace (its image, results and overlay stay there); the control-plane
topics (targets, decisions, status) are shared so one manager sees and steers both.
    ros2 launch dynofa_ros multi_workload.launch.py
    ros2 topic pub --once /performance_target dynofa_ros/msg/PerformanceTarget \
        "{workload: rear_camera, max_latency_ms: 4.0, priority: 0}"
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

WORKLOADS = ('front_camera', 'rear_camera')
SHARED_TOPICS = [(name, '/' + name) for name in ('performance_target', 'subnet_decision', 'workload_status')]


def generate_launch_description() -> LaunchDescription:
    table = LaunchConfiguration('operating_points')
    profile = LaunchConfiguration('device_profile')
    nodes = []
    for priority, workload in zip((1, 0), WORKLOADS):
        nodes += [
            Node(package='dynofa_ros', executable='synthetic_camera', name='camera', namespace=workload,
                 parameters=[{'rate_hz': 30.0 if priority else 15.0}]),
            Node(package='dynofa_ros', executable='perception_node', name='perception', namespace=workload,
                 parameters=[{'workload': workload, 'operating_points': table, 'threads': 1}],
                 remappings=SHARED_TOPICS),
        ]
    manager_params = {'operating_points': table, 'workloads': list(WORKLOADS), 'device_profile': profile,
                      **{f'{w}.priority': p for p, w in zip((1, 0), WORKLOADS)}}
    return LaunchDescription([
        DeclareLaunchArgument('operating_points', default_value=PathJoinSubstitution(
            [FindPackageShare('dynofa_ros'), 'config', 'operating_points', 'fmnist_ofa_mbv3.yaml'])),
        DeclareLaunchArgument('device_profile', default_value='generic_x86'),
        *nodes,
        Node(package='dynofa_ros', executable='resource_manager_node', name='resource_manager',
             parameters=[manager_params]),
        Node(package='dynofa_ros', executable='platform_monitor_node', name='platform_monitor',
             parameters=[{'simulated': True, 'device_profile': profile}]),
    ])
