"""multi_workload.launch.py on a robot: real platform readings, real camera drivers, the actuator.

    ros2 launch dynofa_ros multi_workload_robot.launch.py device_profile:=jetson_xavier_nx \
        front_camera_image:=/front/image_raw rear_camera_image:=/rear/image_raw dry_run:=false
Defaults differ from multi_workload.launch.py only in camera:=false and simulated:=false (stack
`multi_workload_robot` in config/stack.yaml). dry_run stays true until you pass dry_run:=false: only then
does the actuator write cpufreq/devfreq (which needs root).
"""
from launch import LaunchDescription

from dynofa_ros.process_launch import launch_entities


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription(launch_entities('multi_workload_robot'))
