"""The manager's memory decision reaches a real perception-node process: the private forms a
SubnetDecision names become resident, the others are dropped, and a switch to a form not yet built is
served by the shared form until the background build lands."""
from __future__ import annotations

import time

import pytest

from conftest import legacy_table
from test_perception_node import WORKLOAD, _image_from_dataset, _raw, _start_node, _wait_ready

pytestmark = pytest.mark.ros


def _frozen_variants(n: int = 2) -> list[str]:
    """The shipped table's first `n` frozen points (the table carries frozen and int8 forms)."""
    from dynofa_ros.operating_points import load_table
    return [p.id for p in load_table(legacy_table()).points if p.graph_variant == 'frozen'][:n]


def _diagnostic_values(probe) -> dict[str, str]:
    arrays = probe.received('/diagnostics')
    return {kv.key: kv.value for kv in arrays[-1].status[0].values} if arrays else {}


def _resident(probe) -> set[str]:
    text = _diagnostic_values(probe).get('resident_private_forms', '')
    return set(text.split(',')) - {''}


def test_the_decisions_resident_set_is_applied_by_the_node(ros_graph, probe):
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import Image

    from dynofa_ros.msg import InferenceResult, SubnetDecision
    from dynofa_ros.operating_points import split_point_key
    variants = _frozen_variants()
    base = [split_point_key(v)[0] for v in variants]
    _start_node(ros_graph, memory_budget_mb=0.001, initial_subnet=base[0],
                qos_reliability='reliable', qos_depth=10)
    probe.subscribe(InferenceResult, 'inference_result', qos=100)
    probe.subscribe(DiagnosticArray, '/diagnostics')
    images = probe.publisher(Image, 'image', qos=10)
    decisions = probe.publisher(SubnetDecision, 'subnet_decision', latched=True)
    rgb = _image_from_dataset(size=64)
    _wait_ready(probe, images, _raw(rgb, 'rgb8', 0))
    probe.wait_for(lambda: 'resident_private_forms' in _diagnostic_values(probe), 10, 'diagnostics')
    assert _resident(probe) == set()  # the node's own budget held no private form

    decide = lambda subnet_id, resident: decisions.publish(
        SubnetDecision(workload=WORKLOAD, subnet_id=subnet_id, materialised=resident, reason='test'))
    decide(base[0], variants)
    probe.wait_for(lambda: _resident(probe) == set(variants), 30, f'{variants} resident')
    decide(base[0], variants[1:])
    probe.wait_for(lambda: _resident(probe) == set(variants[1:]), 30, f'only {variants[1:]} resident')

    decide(variants[0], variants[1:])  # not resident: the shared form serves while it is built
    served, i = set(), 1
    deadline = time.monotonic() + 30
    while variants[0] not in served and time.monotonic() < deadline:
        images.publish(_raw(rgb, 'rgb8', i))
        i += 1
        time.sleep(0.05)
        served = {r.subnet_id for r in probe.received('inference_result')}
    assert variants[0] in served, served
    assert served <= {base[0], variants[0]}
    probe.wait_for(lambda: _diagnostic_values(probe).get('requested_subnet_id') == variants[0], 10, 'requested')

    decide(variants[0], ['not-a-point'])
    probe.wait_for(lambda: 'not in the table' in _diagnostic_values(probe).get('last_problem', ''), 10,
                   'the unknown resident point reported')
