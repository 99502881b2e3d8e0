"""Reading rosbag2 bags as real ROS 2 tools wrote them, for replay where `ros2 bag` is not installed.

ROS-free (no rclpy): the bag_player node (dynofa_ros/nodes/bag_player.py) turns what this module reads
into publishers. Reading goes through `rosbags`, which opens a bag folder with `metadata.yaml`, or a bare
`.db3` / `.mcap` file; a folder without `metadata.yaml` (an early 2018-2019 rosbag2 bag, or a recording
that was never closed) is read file by file and merged by time. Early bags name types without `/msg/`
(`sensor_msgs/Image`); `normalise_type` maps them to today's names. Every problem with a bag is one
`BagError` whose message says what is wrong with which path.
"""
from __future__ import annotations

import heapq
import math
import struct
from collections.abc import Collection, Container, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STORAGE_SUFFIXES = ('.db3', '.mcap')
DEFAULT_DEPTH = 10  # rosbag2's default publisher offer: reliable, volatile, keep last 10


class BagError(ValueError):
    """A bag that cannot be played: missing, not a bag, unknown storage, corrupt or truncated."""


def _read_errors() -> tuple[type[BaseException], ...]:
    """What rosbags and its storage back-ends raise on unreadable input (apsw does not wrap mid-read)."""
    import apsw
    from rosbags.rosbag2 import ReaderError
    return (ReaderError, apsw.Error, OSError, EOFError, struct.error, ValueError, KeyError, IndexError,
            TypeError, RuntimeError)


def normalise_type(name: str) -> str:
    """'sensor_msgs/Image' (early rosbag2) -> 'sensor_msgs/msg/Image'; full names are unchanged."""
    parts = name.split('/')
    if len(parts) == 2 and all(parts):
        return f'{parts[0]}/msg/{parts[1]}'
    return name


@dataclass(frozen=True)
class ReplayQos:
    """The QoS a replayed topic is offered with (names as in rclpy's policy enums, lower case)."""
    reliability: str = 'reliable'
    durability: str = 'volatile'
    depth: int = DEFAULT_DEPTH
    keep_all: bool = False


def replay_qos(offered: Sequence[Any]) -> tuple[ReplayQos, str | None]:
    """The offer to replay a topic with, from its recorded `offered_qos_profiles`, and a note if defaulted.

    Like rosbag2's player: no recorded profile, or publishers that disagreed on reliability or
    durability, give the default (reliable, volatile, keep last 10). History and depth as recorded when
    explicit; discovery reports them as unknown / depth 0 (what most bags hold), which gives depth 10.
    `offered` holds rosbags `Qos` tuples, parsed by rosbags from either metadata form (the YAML string
    of versions <= 8 and of sqlite topics tables, or the list of version 9).
    """
    if not offered:
        return ReplayQos(), None
    pairs = {(_policy(q.reliability, ('RELIABLE', 'BEST_EFFORT')),
              _policy(q.durability, ('VOLATILE', 'TRANSIENT_LOCAL'))) for q in offered}
    if len(pairs) > 1:
        return ReplayQos(), 'its recorded publishers offered different QoS; replaying reliable, volatile'
    (reliability, durability), = pairs
    reliability = reliability or 'reliable'
    durability = durability or 'volatile'
    first = offered[0]
    history = getattr(first.history, 'name', '')
    if history == 'KEEP_ALL':
        return ReplayQos(reliability, durability, DEFAULT_DEPTH, keep_all=True), None
    depth = int(first.depth) if history == 'KEEP_LAST' and int(first.depth) > 0 else DEFAULT_DEPTH
    return ReplayQos(reliability, durability, depth), None


def _policy(value: Any, known: tuple[str, ...]) -> str | None:
    """'reliable' / 'best_effort' / 'volatile' / 'transient_local', or None (system default, unknown...)."""
    name = getattr(value, 'name', str(value)).upper()
    return name.lower() if name in known else None


@dataclass
class BagTopic:
    """One topic of a bag, merged over its storage files."""
    name: str
    msgtype: str  # normalised
    count: int = 0
    offered: list = field(default_factory=list)
    mixed_types: set[str] = field(default_factory=set)


class Bag:
    """An open bag; `messages()` streams (topic, bag time ns, CDR bytes) in time order."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._readers: list[Any] = []
        try:
            for target in storage_targets(self.path):
                self._readers.append(_open_reader(target))
        except BaseException:
            self.close()
            raise
        self.topics = self._collect_topics()

    def _collect_topics(self) -> dict[str, BagTopic]:
        topics: dict[str, BagTopic] = {}
        for reader in self._readers:
            for connection in reader.connections:
                msgtype = normalise_type(connection.msgtype)
                topic = topics.setdefault(connection.topic, BagTopic(connection.topic, msgtype))
                if msgtype != topic.msgtype:
                    topic.mixed_types.add(msgtype)
                topic.count += connection.msgcount
                topic.offered.extend(getattr(connection.ext, 'offered_qos_profiles', []) or [])
        return topics

    def messages(self, topics: Collection[str]) -> Iterator[tuple[str, int, bytes]]:
        """Messages of `topics` only, merged across storage files by time; BagError if unreadable."""
        streams = []
        for reader in self._readers:
            connections = [c for c in reader.connections if c.topic in topics]
            if connections:  # never an empty list: rosbags reads every message then
                streams.append((c.topic, stamp, raw) for c, stamp, raw in reader.messages(connections))
        try:
            yield from heapq.merge(*streams, key=lambda message: message[1])
        except _read_errors() as exc:
            raise BagError(f'{self.path}: corrupt or truncated bag: {_reason(exc)}') from None

    def close(self) -> None:
        readers, self._readers = self._readers, []
        for reader in readers:
            try:
                reader.close()
            except _read_errors():
                pass  # closing a half-read corrupt file: nothing left to recover

    def __enter__(self) -> Bag:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def storage_targets(path: Path) -> list[Path]:
    """What rosbags opens for `path`: the folder (with metadata.yaml), the file, or each storage file."""
    if not path.exists():
        raise BagError(f'bag {path} does not exist')
    if path.is_dir():
        if (path / 'metadata.yaml').is_file():
            return [path]
        files = sorted(p for p in path.iterdir() if p.suffix in STORAGE_SUFFIXES and p.is_file())
        if not files:
            raise BagError(f'{path} is not a bag: it has no metadata.yaml and no .db3 or .mcap file')
        return files
    if path.suffix not in STORAGE_SUFFIXES:
        raise BagError(f'{path}: unknown storage {path.suffix or "(no suffix)"!r}: expected a rosbag2 '
                       'folder, a .db3 (sqlite3) or a .mcap file')
    return [path]


def _open_reader(target: Path) -> Any:
    from rosbags.rosbag2 import Reader
    try:
        reader = Reader(target)
        reader.open()
    except _read_errors() as exc:
        raise BagError(f'{target}: cannot open as a rosbag2 bag: {_reason(exc)}') from None
    return reader


def _reason(exc: BaseException) -> str:
    text = ' '.join(str(exc).split()).replace('; please report issue.', '.')
    return f'{type(exc).__name__}: {text}' if text else type(exc).__name__


def select_topics(topics: Iterable[BagTopic], supported: Container[str],
                  wanted: Sequence[str] = ()) -> tuple[list[BagTopic], list[str]]:
    """The topics to replay (in `wanted` when given, of a supported type) and one warning per topic left out."""
    topics = list(topics)
    play, warnings = [], []
    for topic in topics:
        if wanted and topic.name not in wanted:
            continue
        if topic.mixed_types:
            types = ', '.join(sorted({topic.msgtype, *topic.mixed_types}))
            warnings.append(f'skipping {topic.name}: it holds several types ({types})')
        elif topic.msgtype not in supported:
            warnings.append(f'skipping {topic.name}: type {topic.msgtype} is not replayable')
        else:
            play.append(topic)
    names = {topic.name for topic in topics}
    warnings += [f'topic {name} was asked for but is not in the bag' for name in wanted if name not in names]
    return play, warnings


def check_positive(name: str, value: float, allow_zero: bool = False) -> float:
    """`value` if finite and > 0 (or 0 when allowed); ValueError naming the parameter otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0 or (value == 0 and not allow_zero):
        bound = '>= 0' if allow_zero else '> 0'
        raise ValueError(f'{name} must be a finite number {bound}, got {value!r}')
    return float(value)


@dataclass(frozen=True)
class Timeline:
    """Bag time <-> wall (monotonic) time at `rate`: `bag_start_ns` plays at `wall_start`."""
    bag_start_ns: int
    wall_start: float
    rate: float

    def wall_at(self, stamp_ns: int) -> float:
        return self.wall_start + (stamp_ns - self.bag_start_ns) / 1e9 / self.rate

    def bag_at(self, wall: float) -> int:
        return self.bag_start_ns + int((wall - self.wall_start) * self.rate * 1e9)
