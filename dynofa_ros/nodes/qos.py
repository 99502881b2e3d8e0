"""QoS of the decision topics, shared by their publisher (the manager) and subscribers."""
from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy


def latched_qos(depth: int = 10) -> QoSProfile:
    """Decisions are state: reliable and transient_local, one history slot per workload, so a node that
    starts (or restarts) late gets the current decision at once instead of waiting for the next refresh.
    A subscriber with this profile only matches transient_local publishers: publish by hand with
    ``ros2 topic pub --qos-durability transient_local --qos-reliability reliable``."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=max(10, depth), reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)
