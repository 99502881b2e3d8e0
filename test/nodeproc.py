"""Start the platform/manager nodes as real processes on a private localhost-only domain (tests only).

Uses the installed executable (lib/dynofa_ros/<node>) where the build installed it, else runs the
installed module with `python -m`, so the tests work before CMakeLists lists a new launcher.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import yaml

from dynofa_ros.process_launch import free_domain_id, isolated_ros_env, node_executable


class Procs:
    def __init__(self, log_dir: Path, domain_id: int | None = None) -> None:
        self.domain_id = free_domain_id() if domain_id is None else domain_id
        self.env = isolated_ros_env(self.domain_id)
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        self.procs: list[tuple[str, subprocess.Popen, object]] = []
        self.names: list[str] = []

    def start(self, node: str, parameters: dict | None = None) -> subprocess.Popen:
        try:
            cmd = [str(node_executable(node))]
        except FileNotFoundError:
            cmd = [sys.executable, "-m", f"dynofa_ros.nodes.{node}"]
        cmd.append("--ros-args")
        if parameters:
            pf = self.log_dir / f"{node}.params.yaml"
            pf.write_text(yaml.safe_dump({"/**": {"ros__parameters": parameters}}))
            cmd += ["--params-file", str(pf)]
        log = open(self.log_dir / f"{node}.log", "wb")  # noqa: SIM115 - closed in stop_all
        # cwd away from the repo: `python -m` puts the cwd first on sys.path, and the source folder has no msg/
        p = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                             cwd=self.log_dir)
        self.procs.append((node, p, log))
        self.names.append(node)
        return p

    def log(self, node: str) -> str:
        return (self.log_dir / f"{node}.log").read_text(errors="replace")

    def stop(self, p: subprocess.Popen, timeout: float = 5.0) -> int:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGINT)
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
            except ProcessLookupError:
                pass
        return p.returncode

    def stop_all(self) -> None:
        for _, p, log in reversed(self.procs):
            self.stop(p)
            log.close()
        self.procs.clear()

    def dump(self) -> str:
        return "\n".join(f"--- {n}\n{self.log(n)[-3000:]}" for n in self.names)
