"""Frequency actuator node: applies FrequencyDecisions through the allowlisted sysfs actuators, or through
the cgroup CPU-bandwidth emulation where the machine has no cpufreq (labelled as emulation). Failed writes
are logged with path and errno (rate-limited per path) and shown in /diagnostics, never fatal; original
settings are restored on exit, and through the state file also after a kill -9 and a restart.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node

from dynofa_ros.nodes.lifecycle import run_node
from dynofa_ros.nodes.parameters import describe
from dynofa_ros.nodes.qos import latched_qos
from dynofa_ros.msg import FrequencyDecision
from dynofa_ros.platform.actuators import SysfsFrequencyActuator, WriteResult, default_state_path
from dynofa_ros.platform.emulation import (LABEL, CgroupCpuBandwidth, detect_cgroup, pids_matching,
                                           release_stale_groups)
from dynofa_ros.platform.profiles import load_profile

BACKENDS = ("auto", "sysfs", "emulation", "none")
GROUP_PREFIX = "dynofa_emulated_dvfs_"
REPEAT_LOG_S = 10.0       # the same failure on the same path is logged again at most this often
MAX_MATCH_CHARS = 256
MAX_PIDS = 1024
MAX_CORES = 4096
MAX_LOGGED_PATHS = 256    # bounds the per-path log state (domain names come from messages)
MAX_DOMAIN_CHARS = 64
MAX_DOMAINS = 64          # a board has a handful of DVFS domains; more in one decision is not a decision


class FrequencyActuatorNode(Node):
    def __init__(self) -> None:
        super().__init__("frequency_actuator")
        self._declare()
        gp = lambda n: self.get_parameter(n).value  # noqa: E731
        self.dry_run = bool(gp("dry_run"))
        backend = self._check_backend(gp("backend"))
        self._check_emulation_parameters(gp)
        self.profile = load_profile(gp("device_profile"))   # ValueError / OSError: one fatal line
        cpu_max = [d.max_hz for d in self.profile.domains if d.kind == "cpu"]
        self.sysfs: SysfsFrequencyActuator | None = None
        self.emul: CgroupCpuBandwidth | None = None
        self._logged: dict[str, tuple[str, float]] = {}
        if backend in ("auto", "sysfs"):
            self.sysfs = self._make_sysfs(backend, gp("sysfs_root"), str(gp("state_file")))
        if self.sysfs is None and backend in ("auto", "emulation") and detect_cgroup(gp("cgroup_root")):
            if not cpu_max:
                raise ValueError(f"device_profile {self.profile.name!r} has no cpu domain to emulate")
            self.cpu_max_hz = max(cpu_max)
            self.emul = self._make_emulation(gp)
        elif backend == "emulation":
            raise ValueError(f"backend emulation: no cgroup CPU controller under {gp('cgroup_root')!r}")
        self.backend = "sysfs" if self.sysfs else "emulation" if self.emul else "none"
        doms = sorted(self.sysfs.domains) if self.sysfs else []
        self.get_logger().info(f"backend {self.backend}{' (' + LABEL + ')' if self.emul else ''}, "
                               f"domains {doms}, dry_run={self.dry_run}")
        for line in self.sysfs.recover() if self.sysfs else []:
            self.get_logger().warning(line)
        self.last: list[WriteResult] = []
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_subscription(FrequencyDecision, "frequency_decision", self._on_decision, latched_qos())
        self.create_timer(1.0, self._diagnostics)

    def _declare(self) -> None:
        p = self.declare_parameter
        p("backend", "auto", describe("sysfs | emulation | none | auto (sysfs where cpufreq/devfreq exist, else "
                                "emulation where a cgroup CPU controller exists, else none)", read_only=True))
        p("dry_run", True, describe("write nothing (log what would be written); decisions marked dry_run are never "
                              "written either", read_only=True))
        p("sysfs_root", "/", describe("sysfs root (tests use a fake tree)", read_only=True))
        p("state_file", "", describe("where the originals of changed files are kept until restored, so a restart "
                                     "after kill -9 restores them ('': $ROS_HOME/dynofa_ros/"
                                     "frequency_actuator_state.json)", read_only=True))
        p("cgroup_root", "/sys/fs/cgroup", describe("emulation: cgroup file system root", read_only=True))
        p("device_profile", "generic_x86", describe("emulation: profile whose CPU maximum maps to 100% bandwidth", read_only=True))
        p("emulation_pids", [0], describe("emulation: process ids to throttle (0 entries ignored)", read_only=True))
        p("emulation_match", "", describe("emulation: also throttle processes whose command line contains this", read_only=True))
        p("emulation_cores", 0, describe("emulation: CPUs that 100% bandwidth means (0: all of this machine)", read_only=True))

    @staticmethod
    def _check_backend(backend: str) -> str:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {list(BACKENDS)}, got {str(backend)[:40]!r}")
        return backend

    def _make_sysfs(self, backend: str, root: str, state_file: str) -> SysfsFrequencyActuator | None:
        if not Path(root).is_dir():
            raise ValueError(f"sysfs_root {root[:200]!r} is not a directory")
        state = Path(state_file) if state_file else default_state_path()
        if not self.dry_run:
            try:
                state.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ValueError(f"state_file folder {str(state.parent)[:200]!r}: {exc.strerror or exc}") from None
            if not os.access(state.parent, os.W_OK) or state.is_dir():
                raise ValueError(f"state_file {str(state)[:200]!r} cannot be written")
        act = SysfsFrequencyActuator(root, dry_run=self.dry_run, state_file=state)
        if act.domains:
            return act
        if backend == "sysfs":
            raise ValueError(f"backend sysfs: no cpufreq policy or GPU devfreq under {root[:200]!r}")
        return None

    @staticmethod
    def _check_emulation_parameters(gp) -> None:
        cores, pids, match = int(gp("emulation_cores")), list(gp("emulation_pids")), str(gp("emulation_match"))
        if not 0 <= cores <= MAX_CORES:
            raise ValueError(f"emulation_cores must be within 0..{MAX_CORES}, got {cores}")
        if len(pids) > MAX_PIDS or any(int(x) < 0 for x in pids):
            raise ValueError(f"emulation_pids: at most {MAX_PIDS} process ids, none negative")
        if len(match) > MAX_MATCH_CHARS:
            raise ValueError(f"emulation_match longer than {MAX_MATCH_CHARS} characters")

    def _make_emulation(self, gp) -> CgroupCpuBandwidth:
        cores, pids, match = int(gp("emulation_cores")), list(gp("emulation_pids")), str(gp("emulation_match"))
        log = self.get_logger()
        stale = [] if self.dry_run else release_stale_groups(GROUP_PREFIX, gp("cgroup_root"))
        for r in stale:   # left by an actuator killed before close()
            (log.info if r.ok else log.warning)(f"stale emulation group: {r}")
        emul = CgroupCpuBandwidth(f"{GROUP_PREFIX}{os.getpid()}", cores or os.cpu_count() or 1,
                                  gp("cgroup_root"), dry_run=self.dry_run)
        self.match = match
        self._report(emul.add_pids([int(x) for x in pids if int(x) > 0]))
        return emul

    def _on_decision(self, msg: FrequencyDecision) -> None:
        if len(msg.domains) > MAX_DOMAINS:
            self.get_logger().warning(f"ignored a decision with {len(msg.domains)} domains (at most {MAX_DOMAINS})",
                                      throttle_duration_sec=REPEAT_LOG_S)
            return
        pairs = [(d.domain[:MAX_DOMAIN_CHARS], int(d.frequency_hz)) for d in msg.domains]
        if msg.dry_run:
            self.get_logger().debug(f"dry-run decision, not applied: {pairs}")
            self.last = [WriteResult(n, str(hz), True, True) for n, hz in pairs]
            return
        if self.sysfs is not None:
            self.last = self.sysfs.apply(pairs)
        elif self.emul is not None:
            if self.match:
                self._report(self.emul.add_pids([p for p in pids_matching(self.match) if p not in self.emul.pids]))
            cpu = [(n, hz) for n, hz in pairs if n.startswith("cpu")]
            if cpu:
                # fraction of each cluster's maximum in the profile (same profile as the manager's)
                known = {d.name: d.max_hz for d in self.profile.domains}
                frac = max(hz / known.get(n, self.cpu_max_hz) for n, hz in cpu)
                self.last = [self.emul.set_fraction(frac)]
        else:
            self.last = [WriteResult(n, str(hz), False, False, "no actuator backend on this machine", tried=False)
                         for n, hz in pairs]
        self._report(self.last)

    def _report(self, results: list[WriteResult]) -> None:
        """Every failure is logged with its path and errno; the same one again only every REPEAT_LOG_S."""
        now = time.monotonic()
        for r in results:
            if r.ok:
                self.get_logger().debug(str(r))
                self._logged.pop(r.path, None)
                continue
            prev = self._logged.get(r.path)
            if prev is None or prev[0] != r.error or now - prev[1] >= REPEAT_LOG_S:
                self.get_logger().warning(f"write failed: {r}")
                if len(self._logged) < MAX_LOGGED_PATHS or r.path in self._logged:
                    self._logged[r.path] = (r.error, now)

    def _diagnostics(self) -> None:
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        s = DiagnosticStatus(name="dynofa_ros: frequency_actuator", hardware_id=self.backend)
        failed = [r for r in self.last if not r.ok]
        s.level = DiagnosticStatus.WARN if failed else DiagnosticStatus.OK
        s.message = f"backend {self.backend}" + (" (emulation)" if self.emul else "") + \
            (f", {len(failed)} failed write(s)" if failed else "")
        s.values = [KeyValue(key="dry_run", value=str(self.dry_run))]
        s.values += [KeyValue(key=r.path, value=r.value + ("" if r.ok else f" FAILED: {r.error}")) for r in self.last]
        arr.status.append(s)
        self.pub_diag.publish(arr)

    def restore(self) -> None:
        """Put back what we changed (on SIGINT / SIGTERM via run_node's exit hook); logs every file."""
        out = []
        if self.sysfs is not None:
            out = self.sysfs.restore()
        if self.emul is not None:
            out = self.emul.close()
        log = self.get_logger()
        for r in out:
            if r.ok:
                log.info(f"restore: {r}")
            else:
                log.error(f"restore: {r}")


def main(args: list[str] | None = None) -> None:
    run_node(FrequencyActuatorNode, "frequency_actuator", args, on_exit=FrequencyActuatorNode.restore)


if __name__ == "__main__":
    main()
