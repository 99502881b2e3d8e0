"""One perception workload with the resource manager, platform monitor and frequency actuator.

    ros2 launch dynofa_ros dynofa.launch.py                       # synthetic camera, simulated platform
    ros2 launch dynofa_ros dynofa.launch.py camera:=false image:=/camera/image_raw simulated:=false
Retarget at run time:
    ros2 topic pub --once /performance_target dynofa_ros/msg/PerformanceTarget \
        "{workload: front_camera, max_latency_ms: 5.0}"
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

ARGUMENTS = [
    ('workload', 'front_camera', 'Workload name shared by the perception node and the manager.'),
    ('operating_points', PathJoinSubstitution([FindPackageShare('dynofa_ros'), 'config', 'operating_points',
                                               'fmnist_ofa_mbv3.yaml']), 'Operating-point table (YAML).'),
    ('device', 'cpu', 'Torch device of the perception node: cpu, cuda, cuda:N.'),
    ('device_key', 'cpu', "Operating-point table device key matching 'device'."),
    ('device_profile', 'generic_x86', 'Platform profile in config/devices (e.g. jetson_xavier_nx).'),
    ('image', 'image', 'Camera image topic.'),
    ('transport', 'raw', 'raw or compressed (subscribes <image>/compressed).'),
    ('camera', 'true', 'Start the synthetic camera.'),
    ('simulated', 'true', 'Simulated platform (battery, thermal, load) instead of the real sysfs.'),
    ('dry_run', 'true', 'Frequency decisions are logged, not written to sysfs.'),
    ('use_sim_time', 'false', 'Use /clock (rosbag replay with --clock).'),
]


def generate_launch_description() -> LaunchDescription:
    cfg = {name: LaunchConfiguration(name) for name, _, _ in ARGUMENTS}
    sim_time = {'use_sim_time': cfg['use_sim_time']}
    return LaunchDescription([
        *[DeclareLaunchArgument(name, default_value=default, description=text)
          for name, default, text in ARGUMENTS],
        Node(package='dynofa_ros', executable='synthetic_camera', name='synthetic_camera',
             condition=IfCondition(cfg['camera']), parameters=[{'rate_hz': 30.0}, sim_time],
             remappings=[('image', cfg['image'])]),
        Node(package='dynofa_ros', executable='perception_node', name='perception',
             parameters=[{'workload': cfg['workload'], 'operating_points': cfg['operating_points'],
                          'device': cfg['device'], 'transport': cfg['transport']}, sim_time],
             remappings=[('image', cfg['image']),
                         ('image/compressed', [cfg['image'], '/compressed'])]),
        Node(package='dynofa_ros', executable='resource_manager_node', name='resource_manager',
             parameters=[{'operating_points': cfg['operating_points'], 'workloads': [cfg['workload']],
                          'device_key': cfg['device_key'], 'device_profile': cfg['device_profile'],
                          'dry_run': cfg['dry_run']}, sim_time]),
        Node(package='dynofa_ros', executable='platform_monitor_node', name='platform_monitor',
             parameters=[{'simulated': cfg['simulated'], 'device_profile': cfg['device_profile']}, sim_time]),
        Node(package='dynofa_ros', executable='frequency_actuator_node', name='frequency_actuator',
             parameters=[{'dry_run': cfg['dry_run'], 'device_profile': cfg['device_profile']}, sim_time]),
    ])
