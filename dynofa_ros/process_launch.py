"""Start installed dynofa_ros nodes as real processes on an isolated, localhost-only ROS graph.

Tests and the demo use this where `ros2 launch` is not installed (PyPI ROS). It starts the same
executables `ros2 run dynofa_ros <node>` would, passes parameters through a params file, and always
cleans the processes up (SIGINT, then SIGKILL of the whole process group; and SIGINT from the kernel
when the launching process dies without cleaning up).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml


# A runner killed outright (timeout, SIGKILL) runs no cleanup; the kernel then sends the nodes SIGINT.
_DIE_WITH_PARENT = ['setpriv', '--pdeathsig', 'INT', '--'] if shutil.which('setpriv') else []


def isolated_ros_env(domain_id: int, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a private ROS graph: its own domain, discovery limited to this machine."""
    env = dict(os.environ if base is None else base)
    env['ROS_DOMAIN_ID'] = str(domain_id)
    env['PYTHONUNBUFFERED'] = '1'
    if env.get('ROS_DISTRO', '').lower() == 'humble':
        env['ROS_LOCALHOST_ONLY'] = '1'
    else:  # Jazzy and later; ROS_LOCALHOST_ONLY is deprecated there
        env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
        env.pop('ROS_LOCALHOST_ONLY', None)
    return env


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


class NodeProcess:
    """One node process with its output captured in a log file."""

    def __init__(self, executable: str, env: Mapping[str, str], log_dir: Path, *,
                 name: str | None = None, parameters: Mapping[str, Any] | None = None,
                 remappings: Mapping[str, str] | None = None) -> None:
        self.name = name or executable
        self.log_path = log_dir / f'{self.name}.log'
        args = [*_DIE_WITH_PARENT, str(node_executable(executable)), '--ros-args']
        if name:
            args += ['-r', f'__node:={name}']
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
        if self.running():
            try:
                os.killpg(self.process.pid, signal.SIGINT)
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
            except ProcessLookupError:
                pass
        self._log.close()
        return self.process.returncode


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
