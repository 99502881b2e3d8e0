"""DVFS actuators: cpufreq per cluster and GPU devfreq, through an allowlisted sysfs writer.

Safety rules (these files change how hot and how fast a robot's computer runs):
- only paths in the allowlist (built from what discovery found) are ever opened for writing;
- dry-run mode records what would be written and writes nothing;
- a failed write (permission, read-only file system, missing file, a path that is a directory) is
  reported in a `WriteResult` with its path and errno, never raised;
- a frequency is always a level the kernel lists, or clamped to cpuinfo_min/max_freq; with neither, the
  write is refused;
- the first value seen at each path is remembered and written back by `restore()` (on exit), every file
  independently; with a state file it is persisted before the first write, so an actuator restarted after
  kill -9 restores the true originals rather than the pinned state it finds.
"""
from __future__ import annotations

import bisect
import contextlib
import errno
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from dynofa_ros.platform.monitors import (CpuCluster, GpuDevfreq, discover_cpu_clusters, discover_gpu, read_int,
                                          read_text)

STATE_VERSION = 1
MAX_STATE_BYTES = 64 * 1024      # a state file holds a few dozen sysfs paths; anything bigger is not ours
MAX_STATE_ENTRIES = 256
MAX_VALUE_CHARS = 128
MAX_PATH_CHARS = 1024


@dataclass(frozen=True)
class WriteResult:
    path: str
    value: str
    ok: bool
    dry_run: bool = False
    error: str = ""
    emulated: bool = False
    tried: bool = True            # False: refused before any write was attempted

    def __str__(self) -> str:
        tag = " (dry run)" if self.dry_run else " (emulation)" if self.emulated else ""
        return f"{self.path} <- {self.value}{tag}" + ("" if self.ok else f" FAILED: {self.error}")


def os_error_text(exc: OSError) -> str:
    """'EACCES: Permission denied' (errno name first, so a log line says which errno it was)."""
    name = errno.errorcode.get(exc.errno, f"errno {exc.errno}") if exc.errno else type(exc).__name__
    return f"{name} ({type(exc).__name__}): {exc.strerror or exc}"


def default_state_path() -> Path:
    """$ROS_HOME/dynofa_ros/frequency_actuator_state.json (ROS_HOME defaults to ~/.ros)."""
    home = os.environ.get("ROS_HOME") or os.path.join(os.path.expanduser("~"), ".ros")
    return Path(home) / "dynofa_ros" / "frequency_actuator_state.json"


def _parse_state(doc: object, where: Path) -> dict[str, str | None]:
    """The originals in a decoded state document; ValueError unless it is exactly what `save` writes."""
    if not isinstance(doc, dict) or set(doc) != {"version", "originals"} or doc["version"] != STATE_VERSION:
        raise ValueError(f"{where}: not a version {STATE_VERSION} actuator state file")
    originals = doc["originals"]
    if not isinstance(originals, dict) or len(originals) > MAX_STATE_ENTRIES:
        raise ValueError(f"{where}: 'originals' must be a mapping of at most {MAX_STATE_ENTRIES} paths")
    for path, value in originals.items():
        if not (os.path.isabs(path) and len(path) <= MAX_PATH_CHARS and path.isprintable()):
            raise ValueError(f"{where}: bad path {path[:80]!r}")
        if value is not None and not (isinstance(value, str) and len(value) <= MAX_VALUE_CHARS
                                      and value.isprintable()):
            raise ValueError(f"{where}: bad original for {path[:80]!r}")
    return dict(originals)


class OriginalsStore:
    """The original value of every path an actuator changed, in a small JSON file (never eval'd or
    unpickled). Written atomically (temp file, fsync, rename) before each first write to a path."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.foreign: dict[str, str | None] = {}   # entries outside this actuator's allowlist: kept, unused

    def load(self) -> dict[str, str | None]:
        """What a previous actuator left unrestored ({} if nothing); ValueError if the file is malformed."""
        try:
            with open(self.path, "rb") as f:
                data = f.read(MAX_STATE_BYTES + 1)
        except FileNotFoundError:
            return {}
        if len(data) > MAX_STATE_BYTES:
            raise ValueError(f"{self.path}: larger than {MAX_STATE_BYTES} bytes")
        try:
            doc = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise ValueError(f"{self.path}: not JSON ({type(exc).__name__})") from None
        return _parse_state(doc, self.path)

    def save(self, originals: dict[str, str | None]) -> None:
        entries = {**self.foreign, **originals}
        if len(entries) > MAX_STATE_ENTRIES:
            raise ValueError(f"more than {MAX_STATE_ENTRIES} originals to record")
        text = json.dumps({"version": STATE_VERSION, "originals": entries}, indent=1, sort_keys=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def finish(self, unrestored: dict[str, str | None]) -> None:
        """After a restore: keep only what still needs restoring; no file at all when nothing does."""
        if unrestored or self.foreign:
            self.save(unrestored)
        else:
            self.path.unlink(missing_ok=True)

    def quarantine(self) -> Path:
        """Move a malformed file aside (kept for a person to read, replaced by the next save)."""
        bad = self.path.with_name(self.path.name + ".bad")
        os.replace(self.path, bad)
        return bad


class SysfsWriter:
    """Writes only allowlisted paths; remembers originals for restore (and persists them to `store`)."""

    def __init__(self, allowlist: Iterable[str | os.PathLike], dry_run: bool = False, emulated: bool = False,
                 store: OriginalsStore | None = None) -> None:
        self.allowlist = {os.path.abspath(p) for p in allowlist}
        self.dry_run = dry_run
        self.emulated = emulated
        self.store = None if dry_run else store
        self.originals: dict[str, str | None] = {}
        self._written: set[str] = set()

    def allow(self, paths: Iterable[str | os.PathLike]) -> None:
        self.allowlist |= {os.path.abspath(p) for p in paths}

    def adopt(self, originals: dict[str, str | None]) -> None:
        """Take over originals a previous actuator recorded (the files now hold its pinned values)."""
        for path, value in originals.items():
            self.originals[path] = value
            self._written.add(path)

    def _remember(self, p: str, v: str) -> WriteResult | None:
        """Record (and persist) the original before the first write; a refusal if it cannot be persisted."""
        if p in self.originals:
            return None
        original = read_text(p)
        if self.store is not None:
            try:
                self.store.save({**self.originals, p: original})
            except (OSError, ValueError) as exc:
                why = os_error_text(exc) if isinstance(exc, OSError) else str(exc)
                return WriteResult(p, v, False, False, f"not written: cannot record its original in "
                                   f"{self.store.path}: {why}", self.emulated, tried=False)
        self.originals[p] = original
        return None

    def write(self, path: str | os.PathLike, value: object) -> WriteResult:
        p, v = os.path.abspath(path), str(value)
        if p not in self.allowlist:
            return WriteResult(p, v, False, self.dry_run, "not in the allowlist; refused", self.emulated, tried=False)
        refused = self._remember(p, v)
        if refused is not None:
            return refused
        if self.dry_run:
            return WriteResult(p, v, True, True, "", self.emulated)
        try:  # never O_CREAT: a sysfs attribute that is not there is an error, not a new file
            fd = os.open(p, os.O_WRONLY | os.O_TRUNC)
            try:
                os.write(fd, v.encode())
            finally:
                os.close(fd)
        except OSError as exc:  # EACCES, EROFS, EISDIR, ENOENT, EINVAL (the kernel refused the value)
            if p not in self._written:
                self.originals.pop(p, None)   # nothing changed yet: nothing to restore
            return WriteResult(p, v, False, False, os_error_text(exc), self.emulated)
        self._written.add(p)
        return WriteResult(p, v, True, False, "", self.emulated)

    def recorded(self, path: str | os.PathLike) -> bool:
        return os.path.abspath(path) in self.originals

    def original(self, path: str | os.PathLike) -> str | None:
        return self.originals.get(os.path.abspath(path))


def _nearest_at_or_above(levels: tuple[int, ...], want: int) -> int:
    i = bisect.bisect_left(levels, want)
    return levels[min(i, len(levels) - 1)]


def _as_int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def write_min_max(writer: SysfsWriter, min_path: Path, max_path: Path, new_min: int, new_max: int) -> list[WriteResult]:
    """Write min/max in the order that keeps min <= max at every step (the kernel rejects the other)."""
    cur_max = read_int(max_path)
    if cur_max is not None and new_min > cur_max:
        return [writer.write(max_path, new_max), writer.write(min_path, new_min)]
    return [writer.write(min_path, new_min), writer.write(max_path, new_max)]


def restore_min_max(writer: SysfsWriter, min_path: Path, max_path: Path) -> list[WriteResult]:
    """Put back whichever of min/max has a usable original; one that has none is reported, not fatal."""
    out, usable = [], {}
    for path in (min_path, max_path):
        if not writer.recorded(path):
            continue
        original = writer.original(path)
        value = _as_int(original)
        if value is None:
            why = "it was unreadable" if original is None else f"{original[:40]!r} is not an integer"
            out.append(WriteResult(os.path.abspath(path), "(original)", False, writer.dry_run,
                                   f"cannot restore: {why}; left as it is", tried=False))
        else:
            usable[path] = value
    if len(usable) == 2:
        out += write_min_max(writer, min_path, max_path, usable[min_path], usable[max_path])
    else:
        out += [writer.write(path, value) for path, value in usable.items()]
    return out


def _refused(path: Path, freq_hz: int, dry_run: bool, why: str) -> list[WriteResult]:
    return [WriteResult(str(path), str(freq_hz), False, dry_run, f"refused: {why}", tried=False)]


class CpuFreqActuator:
    """One cluster: userspace governor + scaling_setspeed when offered, else pin scaling_min/max_freq.
    One write target per cluster (its policy, i.e. the first cpu's cpufreq folder)."""

    def __init__(self, cluster: CpuCluster, writer: SysfsWriter) -> None:
        self.cluster = cluster
        self.writer = writer
        p = cluster.path
        self.mode = "setspeed" if "userspace" in cluster.governors and (p / "scaling_setspeed").exists() else "minmax"
        writer.allow([p / "scaling_governor", p / "scaling_setspeed", p / "scaling_min_freq", p / "scaling_max_freq"])

    def target_khz(self, freq_hz: int) -> int | None:
        """A listed level at or above the request, else the request clamped to cpuinfo limits, else None."""
        want = int(round(freq_hz / 1000))
        if self.cluster.available_khz:
            return _nearest_at_or_above(self.cluster.available_khz, want)
        if self.cluster.limits_khz is not None:
            lo, hi = self.cluster.limits_khz
            return min(hi, max(lo, want))
        return None

    def apply(self, freq_hz: int) -> list[WriteResult]:
        khz = self.target_khz(freq_hz)
        p = self.cluster.path
        if khz is None:
            return _refused(p, freq_hz, self.writer.dry_run,
                            "no scaling_available_frequencies and no cpuinfo_min/max_freq to clamp to")
        if self.mode == "setspeed":
            out = []
            if read_text(p / "scaling_governor") != "userspace":
                out.append(self.writer.write(p / "scaling_governor", "userspace"))
            return out + [self.writer.write(p / "scaling_setspeed", khz)]
        return write_min_max(self.writer, p / "scaling_min_freq", p / "scaling_max_freq", khz, khz)

    def restore(self) -> list[WriteResult]:
        p, w = self.cluster.path, self.writer
        out = restore_min_max(w, p / "scaling_min_freq", p / "scaling_max_freq")
        if w.recorded(p / "scaling_governor"):
            gov = w.original(p / "scaling_governor")
            out.append(w.write(p / "scaling_governor", gov) if gov else
                       WriteResult(str(p / "scaling_governor"), "(original)", False, w.dry_run,
                                   "cannot restore: it was unreadable; left as it is", tried=False))
        return out


class GpuFreqActuator:
    """GPU devfreq: pins min_freq = max_freq = a level from available_frequencies (Hz); without that list
    there is nothing safe to pin to, so writes are refused."""

    def __init__(self, gpu: GpuDevfreq, writer: SysfsWriter) -> None:
        self.gpu = gpu
        self.writer = writer
        writer.allow([gpu.path / "min_freq", gpu.path / "max_freq"])

    def apply(self, freq_hz: int) -> list[WriteResult]:
        if not self.gpu.available_hz:
            return _refused(self.gpu.path, freq_hz, self.writer.dry_run, "no available_frequencies to choose from")
        hz = _nearest_at_or_above(self.gpu.available_hz, int(freq_hz))
        return write_min_max(self.writer, self.gpu.path / "min_freq", self.gpu.path / "max_freq", hz, hz)

    def restore(self) -> list[WriteResult]:
        return restore_min_max(self.writer, self.gpu.path / "min_freq", self.gpu.path / "max_freq")


class SysfsFrequencyActuator:
    """All DVFS domains found under `root`; `apply` takes (domain, Hz) pairs as in FrequencyDecision.
    With `state_file`, originals survive the process (see `recover`)."""

    def __init__(self, root: str | os.PathLike = "/", dry_run: bool = False,
                 state_file: str | os.PathLike | None = None) -> None:
        store = OriginalsStore(state_file) if state_file else None
        self.writer = SysfsWriter([], dry_run=dry_run, store=store)
        self.domains: dict[str, CpuFreqActuator | GpuFreqActuator] = {
            c.name: CpuFreqActuator(c, self.writer) for c in discover_cpu_clusters(root)}
        gpu = discover_gpu(root)
        if gpu is not None:
            self.domains["gpu"] = GpuFreqActuator(gpu, self.writer)

    def recover(self) -> list[str]:
        """Adopt the originals a previous actuator persisted but never restored (it was killed); returns
        what to log. A malformed state file is moved aside: the values found now become the originals."""
        store = self.writer.store
        if store is None:
            return []
        try:
            left = store.load()
        except ValueError as exc:
            return [f"ignoring a malformed state file ({exc}); moved to {store.quarantine()}"]
        mine = {p: v for p, v in left.items() if p in self.writer.allowlist}
        # another root's entries are kept for it, unless their files are gone (a removed test tree)
        store.foreign = {p: v for p, v in left.items() if p not in mine and os.path.exists(p)}
        self.writer.adopt(mine)
        out = []
        if mine:
            out.append(f"recovered {len(mine)} original(s) from {store.path}, left by an actuator that did not "
                       "restore them (killed?); they are restored on exit")
        if store.foreign:
            out.append(f"{len(store.foreign)} entr(ies) in {store.path} are outside this actuator's allowlist "
                       "(another sysfs_root?): kept, not restored")
        return out

    def apply(self, decisions: Iterable[tuple[str, int]]) -> list[WriteResult]:
        out = []
        for name, hz in decisions:
            act = self.domains.get(name)
            if act is None:
                out.append(WriteResult(name, str(hz), False, self.writer.dry_run,
                                       f"no such DVFS domain here (have {sorted(self.domains)})", tried=False))
                continue
            out += act.apply(hz)
        return out

    def restore(self) -> list[WriteResult]:
        """Every domain and every file independently; the state file then keeps only what failed."""
        out = []
        for act in self.domains.values():
            out += act.restore()
        store = self.writer.store
        if store is not None:
            failed = {r.path for r in out if not r.ok and r.tried}
            try:
                store.finish({p: v for p, v in self.writer.originals.items() if p in failed})
            except (OSError, ValueError) as exc:
                why = os_error_text(exc) if isinstance(exc, OSError) else str(exc)
                out.append(WriteResult(str(store.path), "(state)", False, False, f"cannot update: {why}",
                                       tried=False))
        return out
