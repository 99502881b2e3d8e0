"""The resource manager as a real process: its lifecycle, input freshness, state across restarts, target
semantics and parameter validation (private localhost-only domain; the in-test probe drives it)."""
from __future__ import annotations

import time

import pytest

from test_manager_policy import make_table

pytestmark = pytest.mark.ros

NODE = "resource_manager"


def _table(tmp_path):
    from dynofa_ros.operating_points import save_table
    path = tmp_path / "table.yaml"
    save_table(make_table(), path)
    return str(path)


def _call(probe, srv_type, name: str, request, timeout: float = 10.0):
    client = probe.node.create_client(srv_type, name)
    assert client.wait_for_service(timeout_sec=timeout), f"{name} not up"
    future = client.call_async(request)
    probe.wait_for(future.done, timeout, f"{name} reply")
    return future.result()


def _state(probe) -> str:
    from lifecycle_msgs.srv import GetState
    return _call(probe, GetState, f"/{NODE}/get_state", GetState.Request()).current_state.label


def _change(probe, transition: int) -> bool:
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState
    return _call(probe, ChangeState, f"/{NODE}/change_state",
                 ChangeState.Request(transition=Transition(id=transition))).success


def test_lifecycle_configure_activate_deactivate_cleanup(ros_graph, probe, tmp_path):
    from lifecycle_msgs.msg import Transition
    from dynofa_ros.msg import SubnetDecision
    probe.subscribe(SubnetDecision, "subnet_decision")
    proc = ros_graph.start("resource_manager_node", name=NODE, parameters={
        "operating_points": _table(tmp_path), "workloads": ["cam"], "autostart": False,
        "refresh_period_s": 0.2})
    probe.wait_for(lambda: _state(probe) == "unconfigured", 60, "the node, unconfigured")
    time.sleep(1.0)
    assert not probe.received("subnet_decision"), "an unconfigured manager publishes nothing"
    assert _change(probe, Transition.TRANSITION_CONFIGURE) and _state(probe) == "inactive"
    time.sleep(1.0)
    assert not probe.received("subnet_decision"), "an inactive manager publishes nothing"
    assert _change(probe, Transition.TRANSITION_ACTIVATE) and _state(probe) == "active"
    probe.wait_for(lambda: len(probe.received("subnet_decision")) >= 2, 5, "decisions once active")
    assert _change(probe, Transition.TRANSITION_DEACTIVATE) and _state(probe) == "inactive"
    time.sleep(0.3)  # a decision already in flight may still arrive
    n = len(probe.received("subnet_decision"))
    time.sleep(1.0)  # five refresh periods
    assert len(probe.received("subnet_decision")) == n, "decisions after deactivate"
    assert _change(probe, Transition.TRANSITION_CLEANUP) and _state(probe) == "unconfigured"
    # and up again from scratch: configure loads everything anew
    assert _change(probe, Transition.TRANSITION_CONFIGURE) and _change(probe, Transition.TRANSITION_ACTIVATE)
    probe.wait_for(lambda: len(probe.received("subnet_decision")) > n, 5, "decisions after re-activation")
    assert proc.stop() == 0
    assert "Traceback" not in proc.log_path.read_text()


def test_failed_configure_keeps_the_node_up_and_unconfigured(ros_graph, probe, tmp_path):
    from lifecycle_msgs.msg import Transition
    proc = ros_graph.start("resource_manager_node", name=NODE, parameters={
        "operating_points": str(tmp_path / "missing.yaml"), "autostart": False})
    probe.wait_for(lambda: _state(probe) == "unconfigured", 60, "the node, unconfigured")
    assert not _change(probe, Transition.TRANSITION_CONFIGURE)
    assert _state(probe) == "unconfigured" and proc.running()
    assert "configure failed" in proc.output() and "missing.yaml" in proc.output()
    assert proc.stop() == 0
