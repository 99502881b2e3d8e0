"""Thin rclpy nodes over the ROS-free core; the only subpackage that imports rclpy."""
