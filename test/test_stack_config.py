"""config/stack.yaml is the one description of the stacks: the launch files and the process launcher
both build from it, so the suite runs what `ros2 launch` would, even where launch is not installed."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from dynofa_ros.process_launch import has_discovery_range, isolated_ros_env, launch_value, stack_arguments, \
    stack_nodes

REPO = Path(__file__).resolve().parents[1]
STACK = REPO / 'config' / 'stack.yaml'


def _launch_file_stacks() -> dict[str, str]:
    """launch file name -> the stack its generate_launch_description passes to launch_entities."""
    stacks = {}
    for path in sorted((REPO / 'launch').glob('*.launch.py')):
        calls = [node for node in ast.walk(ast.parse(path.read_text()))
                 if isinstance(node, ast.Call) and getattr(node.func, 'id', '') == 'launch_entities']
        assert len(calls) == 1, f'{path.name} does not build its nodes from config/stack.yaml'
        stacks[path.name] = calls[0].args[0].value
    return stacks


def _defaults(stack: str) -> dict:
    return {name: launch_value(default) for name, default, _ in stack_arguments(stack, STACK)}


def test_every_launch_file_is_a_stack_whose_arguments_are_described_and_all_resolve():
    stacks = _launch_file_stacks()
    assert set(stacks.values()) == {'dynofa', 'multi_workload', 'multi_workload_robot'}
    for stack in stacks.values():
        arguments = stack_arguments(stack, STACK)
        assert all(len(text) > 20 for _, _, text in arguments), stack
        nodes = stack_nodes(stack, _defaults(stack), STACK)
        leftovers = re.findall(r'\$\([^)]*\)', yaml.safe_dump([n.__dict__ for n in nodes]))
        assert not leftovers, (stack, leftovers)
        assert {n.executable for n in nodes} >= {'perception_node', 'resource_manager_node', 'platform_monitor_node',
                                                 'frequency_actuator_node'}, stack
        assert {n.name for n in nodes if n.managed} == {'perception', 'resource_manager'}
        assert all(n.parameters['use_sim_time'] is False for n in nodes)


def test_an_argument_reaches_every_parameter_it_names_and_the_robot_stack_only_changes_defaults():
    values = {**_defaults('dynofa'), 'workload': 'arm_camera', 'device_profile': 'jetson_xavier_nx',
              'image': '/arm/image_raw', 'use_sim_time': True}
    nodes = {n.name: n for n in stack_nodes('dynofa', values, STACK)}
    assert nodes['perception'].parameters['workload'] == 'arm_camera'
    assert nodes['resource_manager'].parameters['workloads'] == ['arm_camera']  # a string array
    assert {n.parameters.get('device_profile') for n in nodes.values()} >= {'jetson_xavier_nx'}
    assert nodes['perception'].remappings['image'] == nodes['synthetic_camera'].remappings['image'] == '/arm/image_raw'
    assert all(n.parameters['use_sim_time'] is True for n in nodes.values())

    sim, robot = _defaults('multi_workload'), _defaults('multi_workload_robot')
    assert {k for k in sim if sim[k] != robot[k]} == {'camera', 'simulated'}
    assert robot['camera'] is False and robot['simulated'] is False
    multi = stack_nodes('multi_workload', sim, STACK)
    manager = next(n for n in multi if n.name == 'resource_manager')
    assert manager.parameters['workloads'] == ['front_camera', 'rear_camera']
    assert manager.parameters['front_camera.priority'] == 1 and manager.parameters['rear_camera.priority'] == 0
    assert sorted(n.namespace for n in multi if n.name == 'perception') == ['front_camera', 'rear_camera']


def test_humble_gets_ros_localhost_only_by_what_its_rcl_exports(tmp_path, monkeypatch):
    (tmp_path / 'lib').mkdir()
    (tmp_path / 'lib' / 'librcl.so').write_bytes(b'\x7fELF rcl_init rcl_node_init')  # no discovery range
    monkeypatch.setenv('AMENT_PREFIX_PATH', str(tmp_path))
    monkeypatch.delenv('ROS_DISTRO', raising=False)
    has_discovery_range.cache_clear()
    try:
        env = isolated_ros_env(7, {'ROS_AUTOMATIC_DISCOVERY_RANGE': 'SUBNET'})
        assert env['ROS_LOCALHOST_ONLY'] == '1' and env['ROS_DOMAIN_ID'] == '7'
    finally:
        monkeypatch.undo()
        has_discovery_range.cache_clear()
    assert 'ROS_AUTOMATIC_DISCOVERY_RANGE' in isolated_ros_env(7, {})  # this machine's distro: Iron or later


@pytest.mark.ros
def test_the_process_launcher_runs_the_stack_yaml_parameters_and_the_stack_serves(ros_graph, probe):
    from dynofa_ros.msg import InferenceResult, SubnetDecision
    probe.subscribe(InferenceResult, '/inference_result')
    probe.subscribe(SubnetDecision, '/subnet_decision')
    started = ros_graph.start_stack('dynofa', {'transport': 'compressed', 'image': '/cam/front'},
                                    overrides={'synthetic_camera': {'size': 64, 'rate_hz': 10.0}})
    assert [n.name for n in started] == ['synthetic_camera', 'perception', 'resource_manager',
                                         'platform_monitor', 'frequency_actuator']
    written = yaml.safe_load((ros_graph.log_dir / 'perception.params.yaml').read_text())['/**']['ros__parameters']
    assert written == next(n for n in stack_nodes('dynofa', {**_defaults('dynofa'), 'transport': 'compressed',
                                                            'image': '/cam/front'}, STACK)
                           if n.name == 'perception').parameters
    probe.wait_for(lambda: probe.received('/inference_result'), 90, 'a result over <image>/compressed')
    assert probe.wait_for(lambda: probe.received('/subnet_decision'), 30, 'a manager decision')
    assert all(node.running() for node in started), ros_graph.dump_logs()


@pytest.mark.ros
def test_the_robot_stack_starts_without_cameras_and_copes_without_sysfs(ros_graph, probe):
    from dynofa_ros.msg import SubnetDecision
    probe.subscribe(SubnetDecision, '/subnet_decision')
    started = ros_graph.start_stack('multi_workload_robot')
    assert 'synthetic_camera' not in {n.name for n in started} and len(started) == 5
    decided = probe.wait_for(lambda: {d.workload for d in probe.received('/subnet_decision')} >=
                             {'front_camera', 'rear_camera'}, 90, 'decisions for both workloads')
    assert decided and all(node.running() for node in started), ros_graph.dump_logs()
    assert set(ros_graph.stop_all().values()) == {0}
