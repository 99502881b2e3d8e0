"""Frequency actuator node: applies FrequencyDecisions through the allowlisted sysfs actuators, or through
the cgroup CPU-bandwidth emulation where the machine has no cpufreq (labelled as emulation). Failed writes
are reported (log + /diagnostics), never fatal; original settings are restored on exit.
"""
from __future__ import annotations

import os

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node

from dynofa_ros.nodes.lifecycle import run_node
from dynofa_ros.nodes.parameters import describe
from dynofa_ros.msg import FrequencyDecision
from dynofa_ros.platform.actuators import SysfsFrequencyActuator, WriteResult
from dynofa_ros.platform.emulation import LABEL, CgroupCpuBandwidth, detect_cgroup, pids_matching
from dynofa_ros.platform.profiles import load_profile


class FrequencyActuatorNode(Node):
    def __init__(self) -> None:
        super().__init__("frequency_actuator")
        p = self.declare_parameter
        p("backend", "auto", describe("sysfs | emulation | none | auto (sysfs where cpufreq/devfreq exist, else "
                                "emulation where a cgroup CPU controller exists, else none)", read_only=True))
        p("dry_run", True, describe("write nothing (log what would be written); decisions marked dry_run are never "
                              "written either", read_only=True))
        p("sysfs_root", "/", describe("sysfs root (tests use a fake tree)", read_only=True))
        p("cgroup_root", "/sys/fs/cgroup", describe("emulation: cgroup file system root", read_only=True))
        p("device_profile", "generic_x86", describe("emulation: profile whose CPU maximum maps to 100% bandwidth", read_only=True))
        p("emulation_pids", [0], describe("emulation: process ids to throttle (0 entries ignored)", read_only=True))
        p("emulation_match", "", describe("emulation: also throttle processes whose command line contains this", read_only=True))
        p("emulation_cores", 0, describe("emulation: CPUs that 100% bandwidth means (0: all of this machine)", read_only=True))
        gp = lambda n: self.get_parameter(n).value  # noqa: E731
        self.dry_run = bool(gp("dry_run"))
        backend = gp("backend")
        self.sysfs = None
        self.emul = None
        if backend in ("auto", "sysfs"):
            act = SysfsFrequencyActuator(gp("sysfs_root"), dry_run=self.dry_run)
            if act.domains or backend == "sysfs":
                self.sysfs = act
        if self.sysfs is None and backend in ("auto", "emulation") and detect_cgroup(gp("cgroup_root")):
            self.profile = load_profile(gp("device_profile"))
            cores = int(gp("emulation_cores")) or os.cpu_count() or 1
            self.emul = CgroupCpuBandwidth(f"dynofa_emulated_dvfs_{os.getpid()}", cores, gp("cgroup_root"),
                                           dry_run=self.dry_run)
            self.match = str(gp("emulation_match"))
            self.emul.add_pids([int(x) for x in gp("emulation_pids") if int(x) > 0])
        self.backend = "sysfs" if self.sysfs else "emulation" if self.emul else "none"
        doms = sorted(self.sysfs.domains) if self.sysfs else []
        self.get_logger().info(f"backend {self.backend}{' (' + LABEL + ')' if self.emul else ''}, "
                               f"domains {doms}, dry_run={self.dry_run}")
        self.last: list[WriteResult] = []
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_subscription(FrequencyDecision, "frequency_decision", self._on_decision, 10)
        self.create_timer(1.0, self._diagnostics)

    def _on_decision(self, msg: FrequencyDecision) -> None:
        pairs = [(d.domain, int(d.frequency_hz)) for d in msg.domains]
        if msg.dry_run:
            self.get_logger().debug(f"dry-run decision, not applied: {pairs}")
            self.last = [WriteResult(n, str(hz), True, True) for n, hz in pairs]
            return
        if self.sysfs is not None:
            self.last = self.sysfs.apply(pairs)
        elif self.emul is not None:
            if self.match:
                self.emul.add_pids([p for p in pids_matching(self.match) if p not in self.emul.pids])
            cpu = [(n, hz) for n, hz in pairs if n.startswith("cpu")]
            if cpu:
                # fraction of each cluster's maximum in the profile (same profile as the manager's)
                known = {d.name: d.max_hz for d in self.profile.domains}
                fmax = max(d.max_hz for d in self.profile.domains if d.kind == "cpu")
                frac = max(hz / known.get(n, fmax) for n, hz in cpu)
                self.last = [self.emul.set_fraction(frac)]
        else:
            self.last = [WriteResult(n, str(hz), False, False, "no actuator backend on this machine")
                         for n, hz in pairs]
        for r in self.last:
            if r.ok:
                self.get_logger().debug(str(r))
            else:
                self.get_logger().warning(str(r))

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

    def restore(self) -> list[WriteResult]:
        """Put back what we changed (also on Ctrl-C / SIGTERM via main's finally)."""
        out = []
        if self.sysfs is not None:
            out = self.sysfs.restore()
        if self.emul is not None:
            out = self.emul.close()
        return out


def main(args: list[str] | None = None) -> None:
    def restore(node: FrequencyActuatorNode) -> None:
        for r in node.restore():
            print(f"[frequency_actuator] restore: {r}", flush=True)
    run_node(FrequencyActuatorNode, "frequency_actuator", args, on_exit=restore)


if __name__ == "__main__":
    main()
