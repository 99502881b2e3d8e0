"""Platform layer (ROS-free): sysfs monitors, DVFS actuators, emulated DVFS, simulated platform, profiles."""
