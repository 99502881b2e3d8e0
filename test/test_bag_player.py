"""The bag player on bags as real ROS 2 tools wrote them (test/bag_fixtures.py), through real processes.

ROS-free tests read the fixtures with dynofa_ros.bags; the `ros` tests play them with the installed
bag_player executable to an in-test probe subscriber over DDS.
"""
from __future__ import annotations

import math
import shutil
import statistics
from pathlib import Path

import pytest
import yaml

from bag_fixtures import (IMAGE, JPEG, START_NS, TEMPERATURE, TYPES, UNSUPPORTED, recording, storage_file,
                          write_db3, write_early_bag, write_versioned_bag)
from dynofa_ros.bags import Bag, BagError, ReplayQos, Timeline, check_positive, normalise_type, replay_qos, \
    select_topics

SUPPORTED = {TYPES[IMAGE], TYPES[JPEG], TYPES[TEMPERATURE]}


def _file(folder: Path, rec=None):
    return rec, storage_file(folder)


def _without_metadata(folder: Path, rec):
    (folder / 'metadata.yaml').unlink()
    return rec, folder


FORMATS = {
    'early sqlite3 folder': lambda p: (write_early_bag(p), p),
    'early sqlite3 .db3 file': lambda p: _file(p, write_early_bag(p)),
    **{f'v{v} sqlite3': (lambda p, v=v: (write_versioned_bag(p, v), p)) for v in range(4, 10)},
    'v7 .db3 file': lambda p: _file(p, write_versioned_bag(p, 7)),
    'v9 mcap folder': lambda p: (write_versioned_bag(p, 9, 'mcap'), p),
    'v8 mcap .mcap file': lambda p: _file(p, write_versioned_bag(p, 8, 'mcap')),
    'mcap folder without metadata.yaml': lambda p: _without_metadata(p, write_versioned_bag(p, 9, 'mcap')),
}


def make_bag(kind: str, tmp_path: Path):
    return FORMATS[kind](tmp_path / 'bag')


# ---- ROS-free: reading ----

@pytest.mark.parametrize('kind', FORMATS)
def test_every_format_reads_back_what_was_written(kind, tmp_path):
    rec, path = make_bag(kind, tmp_path)
    with Bag(path) as bag:
        assert {name: topic.msgtype for name, topic in bag.topics.items()} == TYPES
        assert [(t, s, bytes(raw)) for t, s, raw in bag.messages(set(TYPES))] == rec.messages
        qos = {name: replay_qos(topic.offered)[0] for name, topic in bag.topics.items()}
    latched = ReplayQos('best_effort', 'transient_local')
    assert qos[TEMPERATURE] == (ReplayQos() if kind.startswith('early') else latched)
    assert qos[IMAGE] == ReplayQos()


def test_no_selected_topic_reads_nothing(tmp_path):
    """rosbags reads every message for an empty connection list; the player must never ask for that."""
    write_versioned_bag(tmp_path / 'bag', 9)
    with Bag(tmp_path / 'bag') as bag:
        assert list(bag.messages(set())) == []
        assert [t for t, _, _ in bag.messages({JPEG})] == [JPEG] * 4


def test_folder_of_storage_files_without_metadata_merges_by_time(tmp_path):
    """A split recording that was never closed: no metadata.yaml, several .db3 files."""
    rec = recording(frames=4)
    (tmp_path / 'bag').mkdir()
    first, second = recording(), recording()
    first.messages, second.messages = rec.messages[::2], rec.messages[1::2]
    write_db3(tmp_path / 'bag' / 'bag_0.db3', first, 4)
    write_db3(tmp_path / 'bag' / 'bag_1.db3', second, 4)
    with Bag(tmp_path / 'bag') as bag:
        assert [(t, s) for t, s, _ in bag.messages(set(TYPES))] == [(t, s) for t, s, _ in rec.messages]
        assert bag.topics[IMAGE].count == 4


def test_type_names_are_normalised():
    assert normalise_type('sensor_msgs/Image') == 'sensor_msgs/msg/Image'
    assert normalise_type('sensor_msgs/msg/Image') == 'sensor_msgs/msg/Image'
    assert normalise_type('rcl_interfaces/srv/GetParameters_Event') == 'rcl_interfaces/srv/GetParameters_Event'


def test_replay_qos_rules():
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
    zero = QosTime(0, 0)

    def offer(reliability, durability, history=QosHistory.UNKNOWN, depth=0):
        return Qos(history, depth, reliability, durability, zero, zero, QosLiveliness.AUTOMATIC, zero, False)
    best, latched = QosReliability.BEST_EFFORT, QosDurability.TRANSIENT_LOCAL
    assert replay_qos([]) == (ReplayQos(), None)
    assert replay_qos([offer(best, latched)]) == (ReplayQos('best_effort', 'transient_local', 10), None)
    assert replay_qos([offer(best, latched, QosHistory.KEEP_LAST, 3)])[0].depth == 3
    assert replay_qos([offer(best, latched, QosHistory.KEEP_ALL)])[0].keep_all
    mixed, note = replay_qos([offer(best, latched), offer(QosReliability.RELIABLE, latched)])
    assert mixed == ReplayQos() and 'different QoS' in note
    assert replay_qos([offer(QosReliability.SYSTEM_DEFAULT, QosDurability.UNKNOWN)])[0] == ReplayQos()


def test_select_topics_warns_once_per_topic_left_out(tmp_path):
    write_versioned_bag(tmp_path / 'bag', 8)
    with Bag(tmp_path / 'bag') as bag:
        play, warnings = select_topics(bag.topics.values(), SUPPORTED)
        assert [t.name for t in play] == [IMAGE, JPEG, TEMPERATURE]
        assert warnings == [f'skipping {UNSUPPORTED}: type geometry_msgs/msg/Twist is not replayable']
        play, warnings = select_topics(bag.topics.values(), SUPPORTED, [JPEG, '/nope'])
        assert [t.name for t in play] == [JPEG]
        assert warnings == ['topic /nope was asked for but is not in the bag']


def test_bad_paths_are_one_bag_error(tmp_path):
    (tmp_path / 'notes.db3').write_text('not a database\n' * 100)
    (tmp_path / 'empty').mkdir()
    (tmp_path / 'old.bag').write_bytes(b'#ROSBAG V2.0\n')
    for path, words in [(tmp_path / 'missing', 'does not exist'), (tmp_path / 'notes.db3', 'not a database'),
                        (tmp_path / 'empty', 'is not a bag'), (tmp_path / 'old.bag', "unknown storage '.bag'")]:
        with pytest.raises(BagError, match=words):
            Bag(path)


def test_timeline_and_parameter_checks():
    timeline = Timeline(bag_start_ns=10_000_000_000, wall_start=100.0, rate=2.0)
    assert timeline.wall_at(12_000_000_000) == pytest.approx(101.0)
    assert timeline.bag_at(101.0) == 12_000_000_000
    assert check_positive('rate', 2) == 2.0 and check_positive('clock_rate_hz', 0.0, allow_zero=True) == 0.0
    for bad in (0.0, -1.0, math.nan, math.inf, True):
        with pytest.raises(ValueError, match='rate must be a finite number > 0'):
            check_positive('rate', bad)


# ---- real player processes ----

def _reliable(depth: int = 50):
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    return QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE)


def _best_effort(depth: int = 50):
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    return QoSProfile(depth=depth, reliability=ReliabilityPolicy.BEST_EFFORT)


def play(ros_graph, path: Path, remappings=None, **parameters):
    return ros_graph.start('bag_player', parameters={'bag': str(path), **parameters}, remappings=remappings)


def finish(player, timeout: float = 60.0) -> str:
    """Wait for the player to exit; its output."""
    player.process.wait(timeout)
    return player.output()


def fatal_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if '[FATAL]' in line or '[ERROR]' in line]


def subscribe_images(probe) -> None:
    from sensor_msgs.msg import CompressedImage, Image, Temperature
    probe.subscribe(Image, IMAGE, qos=_reliable())
    probe.subscribe(CompressedImage, JPEG, qos=_reliable())
    probe.subscribe(Temperature, TEMPERATURE, qos=_best_effort())  # matches either recorded offer


@pytest.mark.ros
@pytest.mark.parametrize('kind', FORMATS)
def test_player_delivers_every_format(kind, ros_graph, probe, tmp_path):
    from sensor_msgs.msg import CompressedImage, Image, Temperature
    rec, path = make_bag(kind, tmp_path)
    subscribe_images(probe)
    output = finish(play(ros_graph, path, wait_for_subscribers_s=30.0))
    assert ros_graph.nodes[0].process.returncode == 0, output
    for topic, msg_type in ((IMAGE, Image), (JPEG, CompressedImage), (TEMPERATURE, Temperature)):
        expected = rec.frame_ids[topic]
        got = probe.wait_for(lambda t=topic: len(probe.received(t)) >= len(expected) and probe.received(t),
                             10, f'every message on {topic}')
        assert [m.header.frame_id for m in got] == expected, topic
        assert all(type(m) is msg_type for m in got)
    image = probe.received(IMAGE)[-1]
    assert (image.width, image.height, image.encoding, len(image.data)) == (640, 480, 'bgr8', 640 * 480 * 3)
    jpeg = probe.received(JPEG)[-1]
    assert jpeg.format.startswith('bgr8; jpeg') and bytes(jpeg.data[:2]) == b'\xff\xd8'
    assert output.count(f'skipping {UNSUPPORTED}') == 1 and 'Traceback' not in output


def _truncated(path: Path, storage: str) -> Path:
    write_versioned_bag(path.parent / 'whole', 9, storage)
    data = storage_file(path.parent / 'whole').read_bytes()
    path.write_bytes(data[:len(data) // 2])
    return path


def _corrupt_pages(path: Path) -> Path:
    write_versioned_bag(path.parent / 'whole', 9)
    data = bytearray(storage_file(path.parent / 'whole').read_bytes())
    data[len(data) // 2:len(data) // 2 + 3000] = b'\xa5' * 3000
    path.with_suffix('.db3').write_bytes(bytes(data))
    return path.with_suffix('.db3')


def _corrupt_message(path: Path) -> Path:
    """A sound database whose first image is not CDR of sensor_msgs/Image."""
    rec = recording(frames=2)
    topic, stamp, _ = rec.messages[0]
    rec.messages[0] = (topic, stamp, b'\x00\x01\x00\x00' + b'\xff' * 64)
    path.mkdir()
    write_db3(path / 'bag_0.db3', rec, 4)
    return path


def _metadata_with(path: Path, **changes) -> Path:
    write_versioned_bag(path, 8)
    metadata = yaml.safe_load((path / 'metadata.yaml').read_text())
    metadata['rosbag2_bagfile_information'].update(changes)
    (path / 'metadata.yaml').write_text(yaml.safe_dump(metadata))
    return path


def _only_unsupported(path: Path) -> Path:
    write_versioned_bag(path, 9, rec=recording(frames=2, topics=(UNSUPPORTED,)))
    return path


BAD_BAGS = {
    'missing path': (lambda p: p, 'does not exist'),
    'truncated .db3': (lambda p: _truncated(p.with_suffix('.db3'), 'sqlite3'), 'malformed'),
    'truncated .mcap': (lambda p: _truncated(p.with_suffix('.mcap'), 'mcap'), 'cannot open'),
    'corrupt .db3 pages': (_corrupt_pages, 'corrupt'),
    'corrupt message': (_corrupt_message, 'corrupt message on /camera/image'),
    'not a bag (.db3 of text)': (lambda p: (p.with_suffix('.db3').write_text('hello\n' * 500),
                                            p.with_suffix('.db3'))[1], 'not a database'),
    'folder without bag files': (lambda p: (p.mkdir(), (p / 'notes.txt').write_text('x'), p)[2], 'not a bag'),
    'unknown storage suffix': (lambda p: (p.with_suffix('.bag').write_bytes(b'#ROSBAG V2.0\n'),
                                          p.with_suffix('.bag'))[1], "unknown storage '.bag'"),
    'unknown storage in metadata': (lambda p: _metadata_with(p, storage_identifier='rosbag_v2'),
                                    "'rosbag_v2' not supported"),
    'metadata version 10': (lambda p: _metadata_with(p, version=10), 'version 10 not supported'),
    'broken metadata.yaml': (lambda p: (write_versioned_bag(p, 8), (p / 'metadata.yaml').write_text(
        'rosbag2_bagfile_information: [\n'), p)[2], 'YAML'),
    'only unsupported topics': (_only_unsupported, 'nothing to replay'),
}
BAD_PARAMETERS = {'rate 0': {'rate': 0.0}, 'rate negative': {'rate': -2.0}, 'rate NaN': {'rate': math.nan},
                  'clock_rate_hz negative': {'clock_rate_hz': -1.0}, 'no bag': {'bag': ''}}


@pytest.mark.ros
@pytest.mark.parametrize('case', [*BAD_BAGS, *BAD_PARAMETERS])
def test_bad_input_is_one_fatal_line_and_exit_1(case, ros_graph, tmp_path):
    if case in BAD_BAGS:
        make, words = BAD_BAGS[case]
        path, parameters = make(tmp_path / 'bag'), {}
    else:
        rec, path = make_bag('v9 sqlite3', tmp_path)
        parameters, words = BAD_PARAMETERS[case], next(iter(BAD_PARAMETERS[case]))
    player = play(ros_graph, path, wait_for_subscribers_s=0.0, **parameters)
    output = finish(player)
    assert player.process.returncode == 1, output
    assert 'Traceback' not in output, output
    assert len(fatal_lines(output)) == 1, output
    assert words in fatal_lines(output)[0], output


@pytest.mark.ros
@pytest.mark.parametrize('kind', ['v4 sqlite3', 'v9 sqlite3', 'v8 mcap .mcap file', 'early sqlite3 .db3 file'])
def test_recorded_qos_is_offered(kind, ros_graph, probe, tmp_path):
    from rclpy.qos import DurabilityPolicy, ReliabilityPolicy
    _, path = make_bag(kind, tmp_path)
    # Nobody subscribes, so the player waits (offering its publishers) while the probe looks at them.
    player = play(ros_graph, path, wait_for_subscribers_s=60.0)
    offers = {}
    for topic in (TEMPERATURE, IMAGE):
        infos = probe.wait_for(lambda t=topic: probe.node.get_publishers_info_by_topic(t), 30, f'{topic} offer')
        offers[topic] = (infos[0].qos_profile.reliability, infos[0].qos_profile.durability)
    latched = (ReliabilityPolicy.BEST_EFFORT, DurabilityPolicy.TRANSIENT_LOCAL)
    default = (ReliabilityPolicy.RELIABLE, DurabilityPolicy.VOLATILE)
    assert offers[TEMPERATURE] == (default if kind.startswith('early') else latched), player.output()
    assert offers[IMAGE] == default


@pytest.mark.ros
def test_clock_is_steady_and_runs_at_rate(ros_graph, probe, tmp_path):
    from rosgraph_msgs.msg import Clock
    rec = recording(frames=3, period_ns=1_000_000_000, topics=(JPEG,))  # 2 s of bag time
    write_versioned_bag(tmp_path / 'bag', 9, rec=rec)
    probe.subscribe(Clock, '/clock', qos=_reliable(500))
    subscribe_images(probe)
    output = finish(play(ros_graph, tmp_path / 'bag', rate=2.0, clock_rate_hz=20.0, wait_for_subscribers_s=30.0))
    assert 'replayed 3 messages' in output, output
    probe.wait_for(lambda: len(probe.received(JPEG)) == 3, 10, 'the frames')
    with probe.lock:
        ticks = [(t, m.clock.sec * 1_000_000_000 + m.clock.nanosec) for t, _, m in probe.messages['/clock']]
    bag_ns = [ns for _, ns in ticks]
    assert bag_ns == sorted(bag_ns) and START_NS <= bag_ns[0] and bag_ns[-1] <= START_NS + 2_100_000_000
    # 2 s of bag at rate 2 is 1 s of wall time: about 20 ticks at 20 Hz (not 3, one per message).
    assert 15 <= len(ticks) <= 26, len(ticks)
    wall_span, bag_span = ticks[-1][0] - ticks[0][0], (bag_ns[-1] - bag_ns[0]) / 1e9
    assert bag_span / wall_span == pytest.approx(2.0, rel=0.2)
    steps = [(b - a) / 1e6 for a, b in zip(bag_ns, bag_ns[1:])]
    assert statistics.median(steps) == pytest.approx(100.0, rel=0.2), steps  # 50 ms of wall at rate 2
    assert max(steps) < 400, steps


@pytest.mark.ros
def test_last_message_is_delivered_before_exit(ros_graph, probe, tmp_path):
    """The player exits right after its last frame; a reliable subscriber must still get it, every time."""
    from sensor_msgs.msg import Image
    rec = recording(frames=6, period_ns=2_000_000, topics=(IMAGE,))
    write_versioned_bag(tmp_path / 'bag', 9, rec=rec)
    probe.subscribe(Image, IMAGE, qos=_reliable())
    for trial in range(5):
        before = len(probe.received(IMAGE))
        player = play(ros_graph, tmp_path / 'bag', wait_for_subscribers_s=30.0)
        output = finish(player)
        assert player.process.returncode == 0, output
        got = probe.wait_for(lambda: len(probe.received(IMAGE)) - before >= 6 and probe.received(IMAGE),
                             5, f'all 6 frames in trial {trial}')
        assert [m.header.frame_id for m in got[before:]] == rec.frame_ids[IMAGE]


@pytest.mark.ros
def test_loop_restarts_at_once(ros_graph, probe, tmp_path):
    """Each pass of a 0.1 s bag follows the last at once: no per-loop wait for subscribers."""
    import time
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import CompressedImage
    rec = recording(frames=3, period_ns=50_000_000, topics=(JPEG, TEMPERATURE, UNSUPPORTED))
    write_versioned_bag(tmp_path / 'bag', 9, rec=rec)
    probe.subscribe(CompressedImage, JPEG, qos=_reliable())
    probe.subscribe(Clock, '/clock', qos=_reliable(500))
    # Nobody takes the temperature topic: the player waits the full 3 s for it, but only before the first pass.
    player = play(ros_graph, tmp_path / 'bag', loop=True, wait_for_subscribers_s=3.0)
    probe.wait_for(lambda: probe.received(JPEG), 60, 'the first frame')
    start = time.monotonic()
    probe.wait_for(lambda: len(probe.received(JPEG)) >= 15, 10, 'five passes')
    assert time.monotonic() - start < 5.0
    player_output = player.output()
    assert player.running(), player_output
    assert player_output.count(f'skipping {UNSUPPORTED}') == 1
    frames = [m.header.frame_id for m in probe.received(JPEG)]
    assert frames[:15] == rec.frame_ids[JPEG] * 5
    clock = [m.clock.sec * 1_000_000_000 + m.clock.nanosec for m in probe.received('/clock')]
    assert any(b < a for a, b in zip(clock, clock[1:])), 'bag time restarts on each pass'
    assert player.stop() == 0


@pytest.mark.ros
def test_topic_allowlist_and_remapping(ros_graph, probe, tmp_path):
    from sensor_msgs.msg import Image
    rec = write_versioned_bag(tmp_path / 'bag', 8, rec=recording(frames=3))
    subscribe_images(probe)
    probe.subscribe(Image, '/cam/raw', qos=_reliable())
    # use_sim_time as a launch file may set it for every node: the player must not wait for its own /clock.
    output = finish(play(ros_graph, tmp_path / 'bag', remappings={IMAGE: '/cam/raw'}, topics=[IMAGE],
                         wait_for_subscribers_s=30.0, use_sim_time=True))
    assert 'replayed 3 messages' in output, output
    got = probe.wait_for(lambda: len(probe.received('/cam/raw')) >= 3 and probe.received('/cam/raw'), 10,
                         'remapped frames')
    assert [m.header.frame_id for m in got] == rec.frame_ids[IMAGE]
    assert probe.received(IMAGE) == [] and probe.received(JPEG) == [] and probe.received(TEMPERATURE) == []
    assert 'skipping' not in output  # left out by the allowlist, not for their type
