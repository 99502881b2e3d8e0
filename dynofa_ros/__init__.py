"""Dynamic-OFA for ROS 2: a ROS-free core plus thin rclpy nodes (dynofa_ros.nodes)."""
