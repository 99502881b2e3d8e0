"""Parameter descriptors shared by every node: each parameter says what it is for."""
from __future__ import annotations

from rcl_interfaces.msg import ParameterDescriptor


def describe(text: str, read_only: bool = False) -> ParameterDescriptor:
    """A descriptor with `text`; read_only for parameters only read at start-up (rclpy refuses changes)."""
    return ParameterDescriptor(description=text, read_only=read_only)
