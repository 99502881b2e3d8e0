"""Performance targets: one definition of what a target is and which values are valid.

Used by every node and by the policy, for messages and parameters alike: NaN, infinite and negative
values are rejected with a reason, 0 means "no constraint", and accuracy is a fraction 0..1.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

FIELDS = ("max_latency_ms", "min_accuracy", "max_energy_mj", "priority")


class InvalidTarget(ValueError):
    """A target value that is NaN, infinite, negative or out of range; the message says which."""


@dataclass(frozen=True)
class Target:
    """Per-workload performance target; 0 in a constraint field means no constraint."""
    max_latency_ms: float = 0.0
    min_accuracy: float = 0.0
    max_energy_mj: float = 0.0
    priority: int = 0

    def __post_init__(self) -> None:
        problem = target_problem(self.max_latency_ms, self.min_accuracy, self.max_energy_mj, self.priority)
        if problem:
            raise InvalidTarget(problem)


def target_problem(max_latency_ms: float, min_accuracy: float, max_energy_mj: float,
                   priority: float) -> str | None:
    """Why these values are not a valid target, or None when they are."""
    for name, value in zip(FIELDS, (max_latency_ms, min_accuracy, max_energy_mj, priority)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{name} must be a number (0 = no constraint), got {type(value).__name__}"
        if not math.isfinite(value):
            return f"{name} must be finite (0 = no constraint), got {value!r}"
        if value < 0:
            return f"{name} must be >= 0 (0 = no constraint), got {value!r}"
    if min_accuracy > 1:
        return f"min_accuracy is a fraction 0..1, got {min_accuracy!r}"
    if priority != int(priority) or priority > 255:
        return f"priority must be an integer 0..255, got {priority!r}"
    return None


def parse_target(max_latency_ms: float, min_accuracy: float, max_energy_mj: float = 0.0,
                 priority: float = 0) -> Target:
    """A Target from message or parameter fields; InvalidTarget (one clear reason) when invalid."""
    problem = target_problem(max_latency_ms, min_accuracy, max_energy_mj, priority)
    if problem:
        raise InvalidTarget(problem)
    return Target(float(max_latency_ms), float(min_accuracy), float(max_energy_mj), int(priority))


def target_from_msg(msg) -> Target:
    """A Target from a dynofa_ros/PerformanceTarget message (duck-typed: no ROS import here)."""
    return parse_target(msg.max_latency_ms, msg.min_accuracy, msg.max_energy_mj, msg.priority)
