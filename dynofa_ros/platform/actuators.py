"""DVFS actuators: cpufreq per cluster and GPU devfreq, through an allowlisted sysfs writer.

Safety rules (these files change how hot and how fast a robot's computer runs):
- only paths in the allowlist (built from what discovery found) are ever opened for writing;
- dry-run mode records what would be written and writes nothing;
- a failed write (permission, read-only file system, missing file, a path that is a directory) is
  reported in a `WriteResult`, never raised;
- the first value seen at each path is remembered and written back by `restore()` (on exit).
"""
from __future__ import annotations

import bisect
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from dynofa_ros.platform.monitors import (CpuCluster, GpuDevfreq, discover_cpu_clusters, discover_gpu, read_int,
                                          read_text)


@dataclass(frozen=True)
class WriteResult:
    path: str
    value: str
    ok: bool
    dry_run: bool = False
    error: str = ""
    emulated: bool = False

    def __str__(self) -> str:
        tag = " (dry run)" if self.dry_run else " (emulation)" if self.emulated else ""
        return f"{self.path} <- {self.value}{tag}" + ("" if self.ok else f" FAILED: {self.error}")


class SysfsWriter:
    """Writes only allowlisted paths; remembers originals for restore."""

    def __init__(self, allowlist: Iterable[str | os.PathLike], dry_run: bool = False, emulated: bool = False) -> None:
        self.allowlist = {os.path.abspath(p) for p in allowlist}
        self.dry_run = dry_run
        self.emulated = emulated
        self.originals: dict[str, str | None] = {}
        self._written: set[str] = set()

    def allow(self, paths: Iterable[str | os.PathLike]) -> None:
        self.allowlist |= {os.path.abspath(p) for p in paths}

    def write(self, path: str | os.PathLike, value: object) -> WriteResult:
        p, v = os.path.abspath(path), str(value)
        if p not in self.allowlist:
            r = WriteResult(p, v, False, self.dry_run, "not in the allowlist; refused", self.emulated)
        else:
            if p not in self.originals:
                self.originals[p] = read_text(p)
            if self.dry_run:
                r = WriteResult(p, v, True, True, "", self.emulated)
            else:
                try:  # never O_CREAT: a sysfs attribute that is not there is an error, not a new file
                    fd = os.open(p, os.O_WRONLY | os.O_TRUNC)
                    try:
                        os.write(fd, v.encode())
                    finally:
                        os.close(fd)
                    r = WriteResult(p, v, True, False, "", self.emulated)
                except OSError as exc:  # PermissionError, EROFS, IsADirectoryError, ENOENT, EINVAL
                    r = WriteResult(p, v, False, False, f"{type(exc).__name__}: {exc.strerror or exc}",
                                    self.emulated)
                    if p not in self._written:
                        self.originals.pop(p, None)   # nothing changed yet: nothing to restore
        if r.ok and not r.dry_run:
            self._written.add(p)
        return r

    def original(self, path: str | os.PathLike) -> str | None:
        return self.originals.get(os.path.abspath(path))


def _nearest_at_or_above(levels: tuple[int, ...], want: int) -> int:
    if not levels:
        return want
    i = bisect.bisect_left(levels, want)
    return levels[min(i, len(levels) - 1)]


def write_min_max(writer: SysfsWriter, min_path: Path, max_path: Path, new_min: int, new_max: int) -> list[WriteResult]:
    """Write min/max in the order that keeps min <= max at every step (the kernel rejects the other)."""
    cur_max = read_int(max_path)
    if cur_max is not None and new_min > cur_max:
        return [writer.write(max_path, new_max), writer.write(min_path, new_min)]
    return [writer.write(min_path, new_min), writer.write(max_path, new_max)]


class CpuFreqActuator:
    """One cluster: userspace governor + scaling_setspeed when offered, else pin scaling_min/max_freq.
    One write target per cluster (its policy, i.e. the first cpu's cpufreq folder)."""

    def __init__(self, cluster: CpuCluster, writer: SysfsWriter) -> None:
        self.cluster = cluster
        self.writer = writer
        p = cluster.path
        self.mode = "setspeed" if "userspace" in cluster.governors and (p / "scaling_setspeed").exists() else "minmax"
        writer.allow([p / "scaling_governor", p / "scaling_setspeed", p / "scaling_min_freq", p / "scaling_max_freq"])

    def apply(self, freq_hz: int) -> list[WriteResult]:
        khz = _nearest_at_or_above(self.cluster.available_khz, int(round(freq_hz / 1000)))
        p = self.cluster.path
        if self.mode == "setspeed":
            out = []
            if read_text(p / "scaling_governor") != "userspace":
                out.append(self.writer.write(p / "scaling_governor", "userspace"))
            return out + [self.writer.write(p / "scaling_setspeed", khz)]
        return write_min_max(self.writer, p / "scaling_min_freq", p / "scaling_max_freq", khz, khz)

    def restore(self) -> list[WriteResult]:
        p, w = self.cluster.path, self.writer
        out = []
        omin, omax = w.original(p / "scaling_min_freq"), w.original(p / "scaling_max_freq")
        if omin is not None and omax is not None:
            out += write_min_max(w, p / "scaling_min_freq", p / "scaling_max_freq", int(omin), int(omax))
        gov = w.original(p / "scaling_governor")
        if gov is not None:
            out.append(w.write(p / "scaling_governor", gov))
        return out


class GpuFreqActuator:
    """GPU devfreq: pins min_freq = max_freq = the chosen level (Hz)."""

    def __init__(self, gpu: GpuDevfreq, writer: SysfsWriter) -> None:
        self.gpu = gpu
        self.writer = writer
        writer.allow([gpu.path / "min_freq", gpu.path / "max_freq"])

    def apply(self, freq_hz: int) -> list[WriteResult]:
        hz = _nearest_at_or_above(self.gpu.available_hz, int(freq_hz))
        return write_min_max(self.writer, self.gpu.path / "min_freq", self.gpu.path / "max_freq", hz, hz)

    def restore(self) -> list[WriteResult]:
        p, w = self.gpu.path, self.writer
        omin, omax = w.original(p / "min_freq"), w.original(p / "max_freq")
        if omin is None or omax is None:
            return []
        return write_min_max(w, p / "min_freq", p / "max_freq", int(omin), int(omax))


class SysfsFrequencyActuator:
    """All DVFS domains found under `root`; `apply` takes (domain, Hz) pairs as in FrequencyDecision."""

    def __init__(self, root: str | os.PathLike = "/", dry_run: bool = False) -> None:
        self.writer = SysfsWriter([], dry_run=dry_run)
        self.domains: dict[str, CpuFreqActuator | GpuFreqActuator] = {
            c.name: CpuFreqActuator(c, self.writer) for c in discover_cpu_clusters(root)}
        gpu = discover_gpu(root)
        if gpu is not None:
            self.domains["gpu"] = GpuFreqActuator(gpu, self.writer)
        self._touched: list[str] = []

    def apply(self, decisions: Iterable[tuple[str, int]]) -> list[WriteResult]:
        out = []
        for name, hz in decisions:
            act = self.domains.get(name)
            if act is None:
                out.append(WriteResult(name, str(hz), False, self.writer.dry_run,
                                       f"no such DVFS domain here (have {sorted(self.domains)})"))
                continue
            if name not in self._touched:
                self._touched.append(name)
            out += act.apply(hz)
        return out

    def restore(self) -> list[WriteResult]:
        out = []
        for name in reversed(self._touched):
            out += self.domains[name].restore()
        self._touched.clear()
        return out
