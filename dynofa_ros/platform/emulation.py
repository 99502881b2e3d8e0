"""Emulated DVFS for machines without cpufreq (VMs, containers, CI): CPU bandwidth through a cgroup
stands in for CPU frequency, so a frequency decision takes real effect on latency there.

A frequency fraction `f / fmax` becomes a CFS quota of `fraction * cores * period`. This is EMULATION,
not DVFS: it slows work down like a lower clock but saves no energy on the host, and every result it
returns is labelled `emulated=True`. cgroup v1 (`cpu/<group>/cpu.cfs_quota_us`, `cpu.cfs_period_us`,
`tasks`) and cgroup v2 (`<group>/cpu.max` "quota period", `cgroup.procs`) are supported.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from dynofa_ros.platform.actuators import SysfsWriter, WriteResult
from dynofa_ros.platform.monitors import read_text

LABEL = "emulation: CPU bandwidth (cgroup CFS quota) stands in for CPU frequency; no energy effect"


def detect_cgroup(root: str | os.PathLike = "/sys/fs/cgroup") -> tuple[str, Path] | None:
    """('v1', <cpu controller dir>) or ('v2', <unified dir>) or None."""
    root = Path(root)
    if (root / "cpu" / "cpu.cfs_quota_us").exists():
        return "v1", root / "cpu"
    if "cpu" in (read_text(root / "cgroup.controllers") or "").split():
        return "v2", root
    return None


class CgroupCpuBandwidth:
    """A child cgroup holding the throttled processes; `set_fraction(x)` caps them at x of `cores` CPUs."""

    def __init__(self, name: str, cores: int, cgroup_root: str | os.PathLike = "/sys/fs/cgroup",
                 dry_run: bool = False, period_us: int = 100_000, existing: bool = False) -> None:
        """`existing`: take over a group that is already there (to release it), creating nothing."""
        found = detect_cgroup(cgroup_root)
        if found is None:
            raise RuntimeError(f"no writable cgroup CPU controller under {cgroup_root} (v1 cpu/ or v2 cpu)")
        self.version, self.parent = found
        self.group = self.parent / name
        self.cores = max(1, cores)
        self.period_us = period_us
        files = (["cpu.cfs_quota_us", "cpu.cfs_period_us", "tasks", "cgroup.procs"] if self.version == "v1"
                 else ["cpu.max", "cgroup.procs"])
        self.writer = SysfsWriter([self.group / f for f in files] + [self.parent / "cgroup.procs"],
                                  dry_run=dry_run, emulated=True)
        self.pids: list[int] = []
        self.created = existing
        if existing:
            procs = read_text(self.group / "cgroup.procs") or ""
            self.pids = [int(p) for p in procs.split() if p.isdigit()]
        elif not dry_run:
            self.group.mkdir(exist_ok=True)
            self.created = True
            if self.version == "v1":
                self.writer.write(self.group / "cpu.cfs_period_us", period_us)

    def add_pids(self, pids: Iterable[int]) -> list[WriteResult]:
        out = []
        for pid in pids:
            r = self.writer.write(self.group / "cgroup.procs", pid)
            out.append(r)
            if r.ok and pid not in self.pids:
                self.pids.append(pid)
        return out

    def set_fraction(self, fraction: float) -> WriteResult:
        frac = min(1.0, max(0.01, fraction))
        quota = int(frac * self.cores * self.period_us)
        if self.version == "v1":
            return self.writer.write(self.group / "cpu.cfs_quota_us", quota if frac < 1.0 else -1)
        return self.writer.write(self.group / "cpu.max", f"{quota} {self.period_us}" if frac < 1.0 else
                                 f"max {self.period_us}")

    def close(self) -> list[WriteResult]:
        """Lift the cap, move the processes back to the parent, remove the group."""
        out = [self.set_fraction(1.0)]
        for pid in self.pids:
            out.append(self.writer.write(self.parent / "cgroup.procs", pid))
        self.pids.clear()
        if self.created:
            try:
                self.group.rmdir()
            except OSError as exc:
                out.append(WriteResult(str(self.group), "rmdir", False, False, str(exc), True))
            self.created = False
        return out


def release_stale_groups(prefix: str, cgroup_root: str | os.PathLike = "/sys/fs/cgroup",
                         proc: str | os.PathLike = "/proc") -> list[WriteResult]:
    """Groups named `<prefix><pid>` whose owner is gone (killed before `close()`, e.g. kill -9) still cap
    their processes: lift the cap, move the processes back to the parent, remove the group."""
    found = detect_cgroup(cgroup_root)
    if found is None:
        return []
    out: list[WriteResult] = []
    for group in sorted(found[1].glob(f"{prefix}*")):
        owner = group.name[len(prefix):]
        if owner.isdigit() and group.is_dir() and not (Path(proc) / owner).exists():
            out += CgroupCpuBandwidth(group.name, 1, cgroup_root, existing=True).close()
    return out


def pids_matching(substring: str, proc: str | os.PathLike = "/proc") -> list[int]:
    """Processes whose command line contains `substring` (to throttle e.g. a perception node); never this
    process nor its ancestors (the shell or `timeout` that started us carries the same text)."""
    if not substring:
        return []
    skip, pid = set(), os.getpid()
    while pid > 1 and pid not in skip:
        skip.add(pid)
        stat = read_text(Path(proc) / str(pid) / "stat") or ""
        try:
            pid = int(stat.rsplit(")", 1)[1].split()[1])
        except (IndexError, ValueError):
            break
    out = []
    for d in Path(proc).iterdir():
        if not d.name.isdigit() or int(d.name) in skip:
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if substring in cmd:
            out.append(int(d.name))
    return sorted(out)
