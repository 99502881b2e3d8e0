"""Operating-point table (schema version 1): the offline stage's output and the runtime's input.

A table lists the Pareto-optimal sub-networks of one supernet measured on one or more device keys. The
offline stage writes it, the perception node materialises its points and the manager chooses between
them, so it is validated strictly on both sides: a malformed or mismatched table fails at load time with
a `TableError` naming the field, never later in the middle of a run. Schema: docs/operating_points.md.
"""
from __future__ import annotations

import math
import os
import re
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import yaml

SCHEMA_VERSION = 1
FAMILIES = ("ofa_mbv3", "elastic_vit")
GRAPH_VARIANTS = ("eager", "fused", "compiled", "frozen", "int8")
# <processor>[@<qualifier>]*, e.g. cpu, cuda, cpu@2t, cuda@mode15W, cpu@4t@1.5GHz
DEVICE_KEY_RE = re.compile(r"^[a-z][a-z0-9_]*(@[A-Za-z0-9_.:-]+)*$")


class TableError(ValueError):
    """A table that is malformed or does not match what the caller expects; the message names the field."""


@dataclass(frozen=True)
class LatencyStats:
    median: float
    p95: float


@dataclass(frozen=True)
class Normalization:
    mean: tuple[float, ...]
    std: tuple[float, ...]


@dataclass(frozen=True)
class SupernetInfo:
    family: str
    checkpoint: str
    num_classes: int
    normalization: Normalization
    in_channels: int
    labels: tuple[str, ...] | None = None
    labels_file: str | None = None   # one class name per line; resolved like `checkpoint`, read at load
    crop: float = 1.0                # centre-crop share of the shorter side before resizing (ImageNet: 0.875)
    calibration_images: str | None = None  # uint8 [N, C, H, W] tensor file for int8 calibration, resolved like `checkpoint`


def split_point_key(point_id: str) -> tuple[str, str]:
    """(sub-network id, graph variant) of a point id: ``<sub-network id>[@<graph variant>]``, eager
    without a suffix. The id is also the pool's key, so every form of a sub-network shares its prefix."""
    subnet_id, _, variant = point_id.partition("@")
    return subnet_id, variant or "eager"


@dataclass(frozen=True)
class OperatingPoint:
    id: str
    architecture: str
    graph_variant: str
    bn_stats: str | None
    resolution: int
    accuracy: float
    mflops: float
    params_m: float
    memory_mb: float
    latency_ms: dict[str, LatencyStats] = field(hash=False)

    def latency(self, device: str, stat: str = "median") -> float:
        """Latency in ms on `device` ("median" or "p95"); KeyError naming the known keys otherwise."""
        if device not in self.latency_ms:
            raise KeyError(f"point {self.id!r} has no latency for device {device!r}; "
                           f"measured: {sorted(self.latency_ms)}")
        if stat not in ("median", "p95"):
            raise KeyError(f"unknown latency statistic {stat!r}; use 'median' or 'p95'")
        return getattr(self.latency_ms[device], stat)


@dataclass(frozen=True)
class OperatingPointTable:
    supernet: SupernetInfo
    devices: tuple[str, ...]
    points: tuple[OperatingPoint, ...]
    version: int = SCHEMA_VERSION

    def ids(self) -> list[str]:
        return [p.id for p in self.points]

    def point(self, point_id: str) -> OperatingPoint:
        for p in self.points:
            if p.id == point_id:
                return p
        raise KeyError(f"no operating point with id {point_id!r}; known: {self.ids()}")

    def device_for(self, processor: str) -> str:
        """The table's device key for a processor: the exact key if present, else the first key
        qualifying it (e.g. "cpu" -> "cpu@1t"), so a runtime that only knows "cpu"/"cuda" finds it."""
        if processor in self.devices:
            return processor
        for key in self.devices:
            if key.split("@", 1)[0] == processor:
                return key
        raise KeyError(f"table has no latency for processor {processor!r}; device keys: {list(self.devices)}")

    def by_latency(self, device: str, stat: str = "median") -> list[OperatingPoint]:
        """Points sorted fastest first on `device` (the manager's level order)."""
        return sorted(self.points, key=lambda p: (p.latency(device, stat), p.accuracy))

    def best_within(self, device: str, budget_ms: float, stat: str = "median") -> OperatingPoint | None:
        """Most accurate point whose latency on `device` is within `budget_ms`, or None."""
        ok = [p for p in self.points if p.latency(device, stat) <= budget_ms]
        return max(ok, key=lambda p: (p.accuracy, -p.latency(device, stat))) if ok else None


# ----------------------------------------------------------------------------------------------- parsing

_TOP_KEYS = {"version", "supernet", "devices", "points"}
_SUPERNET_REQUIRED = {"family", "checkpoint", "num_classes", "normalization", "in_channels"}
_SUPERNET_KEYS = _SUPERNET_REQUIRED | {"labels", "labels_file", "crop", "calibration_images"}
MAX_LABEL_CHARS = 200
_POINT_KEYS = {"id", "architecture", "graph_variant", "bn_stats", "resolution", "accuracy", "mflops",
               "params_m", "memory_mb", "latency_ms"}


def dominated_rows(table: OperatingPointTable, device: str, stat: str = "median") -> list[str]:
    """Ids of rows that another row of the same graph form beats: no slower on ``device``, no less
    accurate, better in one.  Forms are compared only with themselves: an eager row stays worth shipping
    beside a faster int8 row (int8 runs on a CPU only, and its accuracy is its own)."""
    from dynofa_ros.offline.search import dominates

    def objectives(p: OperatingPoint) -> tuple[float, float]:
        return p.latency(device, stat), p.accuracy

    return [p.id for p in table.points
            if any(q.graph_variant == p.graph_variant and dominates(objectives(q), objectives(p), ("min", "max"))
                   for q in table.points)]


def _check_keys(obj: Any, where: str, required: set[str], allowed: set[str]) -> dict:
    if not isinstance(obj, dict):
        raise TableError(f"{where}: expected a mapping, got {type(obj).__name__}")
    missing = sorted(required - obj.keys())
    if missing:
        raise TableError(f"{where}: missing field(s) {missing}")
    unknown = sorted(str(k) for k in obj.keys() - allowed)
    if unknown:
        raise TableError(f"{where}: unknown field(s) {unknown}")
    return obj


def _number(value: Any, where: str, *, lo: float | None = 0.0, hi: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TableError(f"{where}: expected a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise TableError(f"{where}: must be finite, got {value!r}")
    if lo is not None and v < lo:
        raise TableError(f"{where}: must be >= {lo}, got {value!r}")
    if hi is not None and v > hi:
        raise TableError(f"{where}: must be <= {hi}, got {value!r}")
    return v


def _positive_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise TableError(f"{where}: expected a positive integer, got {value!r}")
    return value


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise TableError(f"{where}: expected a non-empty string, got {value!r}")
    return value


def _float_list(value: Any, where: str, n: int) -> tuple[float, ...]:
    if not isinstance(value, (list, tuple)) or len(value) != n:
        raise TableError(f"{where}: expected a list of {n} number(s) (one per input channel), got {value!r}")
    return tuple(_number(v, f"{where}[{i}]", lo=None) for i, v in enumerate(value))


def _parse_supernet(obj: Any) -> SupernetInfo:
    s = _check_keys(obj, "supernet", _SUPERNET_REQUIRED, _SUPERNET_KEYS)
    family = _string(s["family"], "supernet.family")
    if family not in FAMILIES:
        raise TableError(f"supernet.family: unknown family {family!r}; expected one of {list(FAMILIES)}")
    in_ch = _positive_int(s["in_channels"], "supernet.in_channels")
    num_classes = _positive_int(s["num_classes"], "supernet.num_classes")
    norm = _check_keys(s["normalization"], "supernet.normalization", {"mean", "std"}, {"mean", "std"})
    std = _float_list(norm["std"], "supernet.normalization.std", in_ch)
    if any(v <= 0 for v in std):
        raise TableError(f"supernet.normalization.std: must be > 0, got {list(std)}")
    labels = s.get("labels")
    if labels is not None:
        if not isinstance(labels, list) or len(labels) != num_classes:
            raise TableError(f"supernet.labels: expected a list of num_classes={num_classes} names, got "
                             f"{len(labels) if isinstance(labels, list) else type(labels).__name__}")
        labels = tuple(_string(v, f"supernet.labels[{i}]") for i, v in enumerate(labels))
    if labels is not None and s.get("labels_file") is not None:
        raise TableError("supernet: give labels or labels_file, not both")
    crop = _number(s.get("crop", 1.0), "supernet.crop", lo=0.0, hi=1.0)
    if crop == 0:
        raise TableError("supernet.crop: must be in (0, 1] (share of the shorter side kept), got 0")
    return SupernetInfo(family=family, checkpoint=_string(s["checkpoint"], "supernet.checkpoint"),
                        num_classes=num_classes,
                        normalization=Normalization(_float_list(norm["mean"], "supernet.normalization.mean",
                                                                in_ch), std),
                        in_channels=in_ch, labels=labels, crop=crop,
                        labels_file=_string(s["labels_file"], "supernet.labels_file") if s.get("labels_file") else None,
                        calibration_images=_string(s["calibration_images"], "supernet.calibration_images")
                        if s.get("calibration_images") is not None else None)


def _parse_point(obj: Any, i: int, devices: tuple[str, ...]) -> OperatingPoint:
    where = f"points[{i}]"
    p = _check_keys(obj, where, _POINT_KEYS, _POINT_KEYS)
    pid = _string(p["id"], f"{where}.id")
    where = f"points[{i}] (id {pid!r})"
    variant = p["graph_variant"]
    if variant not in GRAPH_VARIANTS:
        raise TableError(f"{where}.graph_variant: unknown graph variant {variant!r}; "
                         f"expected one of {list(GRAPH_VARIANTS)}")
    bn = p["bn_stats"]
    if bn is not None:
        bn = _string(bn, f"{where}.bn_stats")
    lat = p["latency_ms"]
    if not isinstance(lat, dict):
        raise TableError(f"{where}.latency_ms: expected a mapping of device key -> {{median, p95}}")
    extra = sorted(str(k) for k in lat.keys() - set(devices))
    missing = sorted(set(devices) - lat.keys())
    if extra:
        raise TableError(f"{where}.latency_ms: device(s) {extra} not listed in top-level devices {list(devices)}")
    if missing:
        raise TableError(f"{where}.latency_ms: missing latency for device(s) {missing}")
    latency = {}
    for dev in devices:
        d = _check_keys(lat[dev], f"{where}.latency_ms.{dev}", {"median", "p95"}, {"median", "p95"})
        med = _number(d["median"], f"{where}.latency_ms.{dev}.median")
        p95 = _number(d["p95"], f"{where}.latency_ms.{dev}.p95")
        if p95 < med:
            raise TableError(f"{where}.latency_ms.{dev}: p95 {p95} is below median {med}")
        latency[dev] = LatencyStats(med, p95)
    return OperatingPoint(
        id=pid, architecture=_string(p["architecture"], f"{where}.architecture"), graph_variant=variant,
        bn_stats=bn, resolution=_positive_int(p["resolution"], f"{where}.resolution"),
        accuracy=_number(p["accuracy"], f"{where}.accuracy", lo=0.0, hi=1.0),
        mflops=_number(p["mflops"], f"{where}.mflops"), params_m=_number(p["params_m"], f"{where}.params_m"),
        memory_mb=_number(p["memory_mb"], f"{where}.memory_mb"), latency_ms=latency)


def table_from_dict(data: Any, *, validate_id: Callable[[str], object] | None = None) -> OperatingPointTable:
    """Parse and validate a decoded YAML document. `validate_id` (e.g. the supernet's spec decoder) is
    called on every point id and must raise on an id that is not in the supernet's space."""
    d = _check_keys(data, "table", _TOP_KEYS, _TOP_KEYS)
    if d["version"] != SCHEMA_VERSION:
        raise TableError(f"version: unsupported table version {d['version']!r}; this code reads version "
                         f"{SCHEMA_VERSION}")
    supernet = _parse_supernet(d["supernet"])
    devs = d["devices"]
    if not isinstance(devs, list) or not devs:
        raise TableError("devices: expected a non-empty list of device keys such as [cpu] or [cpu@2t, cuda]")
    for k in devs:
        if not isinstance(k, str) or not DEVICE_KEY_RE.match(k):
            raise TableError(f"devices: malformed device key {k!r} (expected e.g. cpu, cuda, cpu@2t)")
    if len(set(devs)) != len(devs):
        raise TableError(f"devices: duplicate device key in {devs}")
    devices = tuple(devs)
    if not isinstance(d["points"], list) or not d["points"]:
        raise TableError("points: expected a non-empty list of operating points")
    points = tuple(_parse_point(p, i, devices) for i, p in enumerate(d["points"]))
    seen: dict[str, int] = {}
    for i, p in enumerate(points):
        if p.id in seen:
            raise TableError(f"points[{i}].id: duplicate id {p.id!r} (also points[{seen[p.id]}])")
        seen[p.id] = i
        # Variants of one sub-network need distinct ids: "<sub-network id>@<graph variant>".
        subnet_id, _, variant = p.id.partition("@")
        if variant and variant != p.graph_variant:
            raise TableError(f"points[{i}].id: suffix @{variant} does not match graph_variant {p.graph_variant!r}")
        if validate_id is not None:
            try:
                validate_id(subnet_id)
            except Exception as exc:  # the decoder's own error type is not ours to know
                raise TableError(f"points[{i}].id: {p.id!r} is not a sub-network of this supernet: {exc}") from exc
    return OperatingPointTable(supernet=supernet, devices=devices, points=points, version=SCHEMA_VERSION)


def table_to_dict(table: OperatingPointTable) -> dict:
    """Plain-YAML form (field order as documented)."""
    s = table.supernet
    sup: dict[str, Any] = {"family": s.family, "checkpoint": s.checkpoint, "num_classes": s.num_classes}
    if s.labels_file is not None:
        sup["labels_file"] = s.labels_file
    elif s.labels is not None:
        sup["labels"] = list(s.labels)
    if s.crop != 1.0:
        sup["crop"] = s.crop
    sup["normalization"] = {"mean": list(s.normalization.mean), "std": list(s.normalization.std)}
    sup["in_channels"] = s.in_channels
    if s.calibration_images is not None:
        sup["calibration_images"] = s.calibration_images
    return {
        "version": table.version, "supernet": sup, "devices": list(table.devices),
        "points": [{"id": p.id, "architecture": p.architecture, "graph_variant": p.graph_variant,
                    "bn_stats": p.bn_stats, "resolution": p.resolution, "accuracy": p.accuracy,
                    "mflops": p.mflops, "params_m": p.params_m, "memory_mb": p.memory_mb,
                    "latency_ms": {k: {"median": v.median, "p95": v.p95} for k, v in p.latency_ms.items()}}
                   for p in table.points]}


# --------------------------------------------------------------------------------------------------- IO

def load_table(path: str | os.PathLike, *, family: str | None = None, num_classes: int | None = None,
               device: str | None = None, validate_id: Callable[[str], object] | None = None
               ) -> OperatingPointTable:
    """Read and validate a table; the keyword checks reject a table that does not match its user
    (wrong supernet family, class count, or a device key it was not measured on)."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as exc:
        raise TableError(f"{path}: cannot read operating-point table: {exc}") from exc
    except yaml.YAMLError as exc:
        raise TableError(f"{path}: not valid YAML: {exc}") from exc
    try:
        table = table_from_dict(data, validate_id=validate_id)
        if family is not None and table.supernet.family != family:
            raise TableError(f"supernet.family: table is for {table.supernet.family!r}, expected {family!r}")
        if num_classes is not None and table.supernet.num_classes != num_classes:
            raise TableError(f"supernet.num_classes: table has {table.supernet.num_classes}, model has {num_classes}")
        if device is not None and device not in table.devices:
            raise TableError(f"devices: table was not measured on {device!r}; it has {list(table.devices)}")
        if table.supernet.labels_file is not None:
            labels = read_labels(resolve_package_path(path, table.supernet.labels_file), table.supernet.num_classes)
            table = replace(table, supernet=replace(table.supernet, labels=labels))
    except TableError as exc:
        raise TableError(f"{path}: {exc}") from None
    return table


def read_labels(path: Path, num_classes: int) -> tuple[str, ...]:
    """A labels file: exactly `num_classes` non-empty lines (bounded), e.g. the 1000 ImageNet classes."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line.strip() for _, line in zip(range(num_classes + 1), f)]
    except OSError as exc:
        raise TableError(f"supernet.labels_file: cannot read {path}: {exc}") from None
    lines = [line for line in lines if line]
    if len(lines) != num_classes or any(len(line) > MAX_LABEL_CHARS for line in lines):
        raise TableError(f"supernet.labels_file: {path} must hold exactly num_classes={num_classes} names of at "
                         f"most {MAX_LABEL_CHARS} characters, one per line")
    return tuple(lines)


def save_table(table: OperatingPointTable, path: str | os.PathLike) -> None:
    """Validate, then write atomically (temp file in the same folder + fsync + rename), so a reader
    never sees a half-written table."""
    data = table_to_dict(table)
    table_from_dict(data)  # never write what we would refuse to read
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=110))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def resolve_bn_stats(table_path: str | os.PathLike, point: OperatingPoint) -> Path | None:
    """BN-statistics file of a point: absolute, or relative to the table file's folder."""
    if point.bn_stats is None:
        return None
    p = Path(point.bn_stats)
    return p if p.is_absolute() else Path(table_path).resolve().parent / p


def resolve_package_path(table_path: str | os.PathLike, path: str) -> Path:
    """A path named in a table: absolute, or relative to the package root holding the table. The root is
    the nearest ancestor of the table's folder where the relative path exists (source tree or install
    share/ folder); if none has it, the folder above `config/`, so the error shows the expected place."""
    ck = Path(path)
    if ck.is_absolute():
        return ck
    table_dir = Path(table_path).resolve().parent
    for root in (table_dir, *table_dir.parents):
        if (root / ck).exists():
            return root / ck
    for root in (table_dir, *table_dir.parents):
        if root.name == "config":
            return root.parent / ck
    return table_dir / ck


def resolve_checkpoint(table_path: str | os.PathLike, table: OperatingPointTable) -> Path:
    """The table's supernet checkpoint (see `resolve_package_path`)."""
    return resolve_package_path(table_path, table.supernet.checkpoint)


def resolve_calibration_images(table_path: str | os.PathLike, table: OperatingPointTable) -> Path | None:
    """The table's int8 calibration images, or None when it names none (see `resolve_package_path`)."""
    name = table.supernet.calibration_images
    return None if name is None else resolve_package_path(table_path, name)


DEFAULT_TABLE = "fmnist28_ofa_mbv3.yaml"  # the 28-px supernet: dynofa search front + frozen/int8 forms


def default_table_path() -> Path:
    """The shipped default table, the same for every node: share/dynofa_ros/config/operating_points of
    the first install prefix that has it (AMENT_PREFIX_PATH), else the source tree."""
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        candidate = Path(prefix) / "share" / "dynofa_ros" / "config" / "operating_points" / DEFAULT_TABLE
        if prefix and candidate.is_file():
            return candidate
    return Path(__file__).resolve().parents[1] / "config" / "operating_points" / DEFAULT_TABLE
