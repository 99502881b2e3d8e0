"""Start installed dynofa_ros nodes as real processes on an isolated, localhost-only ROS graph.

Tests and the demo use this where `ros2 launch` is not installed (PyPI ROS). It starts the same
executables `ros2 run dynofa_ros <node>` would, passes parameters through a params file, and always
cleans the processes up (SIGINT, then SIGKILL of the whole process group; and SIGINT from the kernel
when the launching process dies without cleaning up).

The stacks themselves (nodes, parameters, launch arguments) are described once, in config/stack.yaml:
`stack_nodes` resolves a stack for given argument values; `RosGraph.start_stack` starts it as
processes, and `launch_entities` turns it into launch_ros actions for launch/*.launch.py, so the tests
run the parameters the launch files pass.
"""
from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import re
from dataclasses import dataclass, field

import yaml


# A runner killed outright (timeout, SIGKILL) runs no cleanup; the kernel then sends the nodes SIGINT.
_DIE_WITH_PARENT = ['setpriv', '--pdeathsig', 'INT', '--'] if shutil.which('setpriv') else []


def isolated_ros_env(domain_id: int, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a private ROS graph: its own domain, discovery limited to this machine."""
    env = dict(os.environ if base is None else base)
    env['ROS_DOMAIN_ID'] = str(domain_id)
    env['PYTHONUNBUFFERED'] = '1'
    if has_discovery_range():
        env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
        env.pop('ROS_LOCALHOST_ONLY', None)  # deprecated from Iron on; would override the range
    else:  # Humble
        env['ROS_LOCALHOST_ONLY'] = '1'
    return env


@functools.cache
def has_discovery_range() -> bool:
    """Whether this ROS distro knows ROS_AUTOMATIC_DISCOVERY_RANGE (Iron and later; Humble does not).

    Decided by what the distro's rcl exports (rcl_get_automatic_discovery_range), not by ROS_DISTRO,
    which PyPI venvs leave unset; where no librcl is found, a current distro is assumed.
    """
    for prefix in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep):
        library = Path(prefix) / 'lib' / 'librcl.so'
        if prefix and library.is_file():
            return b'rcl_get_automatic_discovery_range' in library.read_bytes()
    return True


def free_domain_id() -> int:
    """A domain id unlikely to be shared with another test run on this machine (1..100)."""
    return 1 + (os.getpid() * 7 + int(time.time())) % 100


def node_executable(name: str) -> Path:
    """lib/dynofa_ros/<name> in the first AMENT_PREFIX_PATH entry that has it."""
    for prefix in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep):
        candidate = Path(prefix) / 'lib' / 'dynofa_ros' / name
        if prefix and candidate.is_file():
            return candidate
    raise FileNotFoundError(f"dynofa_ros executable '{name}' not found under AMENT_PREFIX_PATH "
                            "(build with scripts/setup_env.sh and source ws/env.sh)")


_VALUE = re.compile(r'^\$\((var|workload) ([A-Za-z_][A-Za-z0-9_]*)\)$')


@dataclass
class NodeSpec:
    """One node of a stack, resolved for given launch-argument values."""

    name: str
    executable: str
    namespace: str = ''
    parameters: dict[str, Any] = field(default_factory=dict)
    remappings: dict[str, Any] = field(default_factory=dict)
    managed: bool = False
    condition: Any = None  # the value of the node's `if` argument; None: always started


def share_file(relative: str) -> Path:
    """share/dynofa_ros/<relative> of the install (AMENT_PREFIX_PATH), else the source tree's copy."""
    for prefix in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep):
        candidate = Path(prefix) / 'share' / 'dynofa_ros' / relative
        if prefix and candidate.is_file():
            return candidate
    return Path(__file__).resolve().parents[1] / relative


def load_stacks(path: Path | None = None) -> dict[str, Any]:
    """config/stack.yaml (or `path`) as a dict; read on every call so edits need no restart."""
    return yaml.safe_load((path or share_file('config/stack.yaml')).read_text())


def stack_arguments(stack: str, path: Path | None = None) -> list[tuple[str, str, str]]:
    """(name, default, description) of each launch argument the stack declares."""
    description = load_stacks(path)
    chosen = description['stacks'][stack]
    defaults = chosen.get('defaults', {})
    return [(name, str(defaults.get(name, description['arguments'][name]['default'])),
             description['arguments'][name]['description']) for name in chosen['arguments']]


def _resolve(value: Any, arguments: Mapping[str, Any], workload: Mapping[str, Any], names: list) -> Any:
    """Replace $(var X), $(workload F) and $(workloads) in a stack value (recursively)."""
    if isinstance(value, list):
        return [_resolve(item, arguments, workload, names) for item in value]
    if isinstance(value, dict):
        return {key: _resolve(item, arguments, workload, names) for key, item in value.items()}
    if value == '$(workloads)':
        return list(names)
    match = _VALUE.match(value) if isinstance(value, str) else None
    if not match:
        return value
    kind, key = match.groups()
    source = arguments if kind == 'var' else workload
    if key not in source:
        raise KeyError(f"config/stack.yaml: {value} names no {'launch argument' if kind == 'var' else 'workload field'}"
                       f" of this stack")
    return source[key]


def _spec(name: str, entry: Mapping[str, Any], common: Mapping[str, Any], namespace: str,
          resolve: Callable[[Any], Any]) -> NodeSpec:
    """One stack.yaml node entry, its values resolved (common parameters first, the node's own win)."""
    return NodeSpec(name=name, executable=entry['executable'], namespace=namespace,
                    parameters={**resolve(dict(common)), **resolve(dict(entry.get('parameters', {})))},
                    remappings=resolve(dict(entry.get('remappings', {}))), managed=bool(entry.get('managed')),
                    condition=resolve(f"$(var {entry['if']})") if 'if' in entry else None)


def stack_nodes(stack: str, arguments: Mapping[str, Any], path: Path | None = None) -> list[NodeSpec]:
    """The stack's nodes in start order, with every $(...) replaced by the given argument values.

    Values may be plain (the process launcher) or launch substitutions (the launch files).
    """
    description = load_stacks(path)
    chosen = description['stacks'][stack]
    common = description.get('common_parameters', {})
    values = {name: arguments[name] for name in chosen['arguments']}
    workloads = [_resolve(w, values, {}, []) for w in chosen['workloads']]
    names = [w['name'] for w in workloads]
    nodes = []
    for workload in workloads:
        namespace = workload['name'] if chosen.get('namespaced') else ''
        for name, entry in description['workload_nodes'].items():
            nodes.append(_spec(name, entry, common, namespace,
                               lambda v, w=workload: _resolve(v, values, w, names)))
    for name, entry in description['shared_nodes'].items():
        spec = _spec(name, entry, common, '', lambda v: _resolve(v, values, {}, names))
        for key in entry.get('workload_parameters', []):
            spec.parameters.update({f"{w['name']}.{key}": w[key] for w in workloads if key in w})
        nodes.append(spec)
    return nodes


def launch_value(text: str) -> Any:
    """A launch-argument string typed the way launch_ros types parameter values (as YAML)."""
    if not isinstance(text, str) or text == '':
        return text
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, (bool, int, float, str)) else text


class NodeProcess:
    """One node process with its output captured in a log file."""

    def __init__(self, executable: str, env: Mapping[str, str], log_dir: Path, *,
                 name: str | None = None, namespace: str = '', parameters: Mapping[str, Any] | None = None,
                 remappings: Mapping[str, str] | None = None) -> None:
        self.name = f"{namespace.strip('/').replace('/', '.')}.{name or executable}" if namespace \
            else name or executable
        self.log_path = log_dir / f'{self.name}.log'
        args = [*_DIE_WITH_PARENT, str(node_executable(executable)), '--ros-args']
        if name:
            args += ['-r', f'__node:={name}']
        if namespace:
            args += ['-r', f"__ns:=/{namespace.strip('/')}"]
        if parameters:
            params_file = log_dir / f'{self.name}.params.yaml'
            params_file.write_text(yaml.safe_dump({'/**': {'ros__parameters': dict(parameters)}}))
            args += ['--params-file', str(params_file)]
        for source, target in (remappings or {}).items():
            args += ['-r', f'{source}:={target}']
        self._log = open(self.log_path, 'wb')  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(args, env=dict(env), stdout=self._log, stderr=subprocess.STDOUT,
                                        start_new_session=True)

    def running(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors='replace')

    def stop(self, timeout: float = 5.0) -> int:
        """SIGINT (clean rclpy shutdown), then SIGKILL of the process group; returns the exit code."""
        code = stop_process_group(self.process, timeout)
        self._log.close()
        return code


def stop_process_group(process: subprocess.Popen, timeout: float = 5.0) -> int:
    """SIGINT to the process group of `process` (started with start_new_session), SIGKILL after
    `timeout`; returns the exit code. Safe on a process that has already ended."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGINT)
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        except ProcessLookupError:
            pass
    return process.returncode


class RosGraph:
    """A set of node processes on one isolated domain; `stop_all` is idempotent."""

    def __init__(self, domain_id: int | None = None, log_dir: Path | None = None) -> None:
        self.domain_id = free_domain_id() if domain_id is None else domain_id
        self.env = isolated_ros_env(self.domain_id)
        self.log_dir = Path(log_dir or tempfile.mkdtemp(prefix='dynofa_graph_'))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.nodes: list[NodeProcess] = []

    def start(self, executable: str, **kwargs: Any) -> NodeProcess:
        node = NodeProcess(executable, self.env, self.log_dir, **kwargs)
        self.nodes.append(node)
        return node

    def start_stack(self, stack: str, arguments: Mapping[str, Any] | None = None, *,
                    only: Iterable[str] | None = None,
                    overrides: Mapping[str, Mapping[str, Any]] | None = None) -> list[NodeProcess]:
        """Start a config/stack.yaml stack as its launch file would, with `arguments` as `name:=value`.

        `only` limits it to some node names; `overrides` adds or replaces parameters per node name (in
        every namespace of a multi-workload stack).
        Managed nodes configure and activate themselves here (their `autostart` default).
        """
        values = {name: default for name, default, _ in stack_arguments(stack)}
        unknown = set(arguments or {}) - set(values)
        if unknown:
            raise KeyError(f"stack '{stack}' has no launch argument(s) {sorted(unknown)}")
        values.update({k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in (arguments or {}).items()})
        started = []
        for spec in stack_nodes(stack, {name: launch_value(text) for name, text in values.items()}):
            if (only is not None and spec.name not in only) or (spec.condition is not None and not spec.condition):
                continue
            parameters = {**spec.parameters, **(overrides or {}).get(spec.name, {})}
            started.append(self.start(spec.executable, name=spec.name, namespace=spec.namespace,
                                      parameters=parameters, remappings=spec.remappings))
        return started

    def stop_all(self) -> dict[str, int]:
        codes = {node.name: node.stop() for node in reversed(self.nodes)}
        self.nodes.clear()
        return codes

    def dump_logs(self, tail_chars: int = 3000) -> str:
        return '\n'.join(f'--- {path.name}\n{path.read_text(errors="replace")[-tail_chars:]}'
                         for path in sorted(self.log_dir.glob('*.log')))


@contextmanager
def ros_graph(domain_id: int | None = None, log_dir: Path | None = None) -> Iterator[RosGraph]:
    graph = RosGraph(domain_id, log_dir)
    try:
        yield graph
    finally:
        graph.stop_all()


# ---- launch files: the same stacks as launch_ros actions (imported by launch/*.launch.py only) ----------

def launch_entities(stack: str) -> list:
    """DeclareLaunchArgument for each of the stack's arguments, then its nodes as launch_ros actions."""
    from launch.actions import DeclareLaunchArgument
    from launch.substitutions import LaunchConfiguration
    declared = stack_arguments(stack)
    entities: list = [DeclareLaunchArgument(name, default_value=default, description=text)
                      for name, default, text in declared]
    for spec in stack_nodes(stack, {name: LaunchConfiguration(name) for name, _, _ in declared}):
        entities += _launch_node(spec)
    return entities


def _launch_node(spec: NodeSpec) -> list:
    """A Node action; a managed node becomes a LifecycleNode that launch configures, then activates."""
    from launch.conditions import IfCondition
    from launch.substitution import Substitution
    from launch_ros.actions import LifecycleNode, Node

    def value(item: Any) -> Any:  # [[substitution]]: one list element each, not one joined string
        return [[x] if isinstance(x, Substitution) else x for x in item] if isinstance(item, list) else item

    parameters = {key: value(item) for key, item in spec.parameters.items()}
    common = dict(package='dynofa_ros', executable=spec.executable, name=spec.name, namespace=spec.namespace,
                  remappings=list(spec.remappings.items()), output='screen',
                  condition=IfCondition(spec.condition) if spec.condition is not None else None)
    if not spec.managed:
        return [Node(parameters=[parameters], **common)]
    node = LifecycleNode(parameters=[{**parameters, 'autostart': False}], **common)
    return [node, *_lifecycle_startup(node)]


def _lifecycle_startup(node: Any) -> list:
    """configure once the process runs, activate once configured (as Nav2's lifecycle manager does)."""
    from launch.actions import EmitEvent, RegisterEventHandler
    from launch.event_handlers import OnProcessStart
    from launch.events import matches_action
    from launch_ros.event_handlers import OnStateTransition
    from launch_ros.events.lifecycle import ChangeState
    from lifecycle_msgs.msg import Transition

    def change(transition: int) -> Any:
        return EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node), transition_id=transition))

    return [RegisterEventHandler(OnProcessStart(target_action=node,
                                                on_start=[change(Transition.TRANSITION_CONFIGURE)])),
            RegisterEventHandler(OnStateTransition(target_lifecycle_node=node, start_state='configuring',
                                                   goal_state='inactive',
                                                   entities=[change(Transition.TRANSITION_ACTIVATE)]))]
