"""Replay a rosbag2 into the graph with a steady /clock, where `ros2 bag play` is not installed.

    ros2 run dynofa_ros bag_player --ros-args -p bag:=/path/to/bag -p loop:=true -r /image:=/cam/image
`bag` is a bag folder (with or without metadata.yaml) or a single .db3 / .mcap file (dynofa_ros/bags.py
reads it). Topics are offered with their recorded QoS, /clock ticks at `clock_rate_hz` like
`ros2 bag play --clock`, and nodes set `use_sim_time:=true` to follow it. The raw CDR is deserialised by
rclpy into an allowlisted set of message types (which also rejects a corrupt message before it reaches
a subscriber); nothing from the bag is imported, evaluated or unpickled. A bad bag or parameter is one
fatal line and exit code 1.
"""
from __future__ import annotations

import time
from collections.abc import Generator, Iterator

import rclpy
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.clock import Clock as RclpyClock, ClockType
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import BatteryState, CameraInfo, CompressedImage, Image, Temperature

from dynofa_ros.bags import Bag, BagError, BagTopic, ReplayQos, Timeline, check_positive, replay_qos, \
    select_topics
from dynofa_ros.msg import PerformanceTarget, PlatformLoad
from dynofa_ros.nodes.lifecycle import run_node
from dynofa_ros.nodes.parameters import describe

REPLAYABLE = {
    'sensor_msgs/msg/Image': Image, 'sensor_msgs/msg/CompressedImage': CompressedImage,
    'sensor_msgs/msg/CameraInfo': CameraInfo,
    'sensor_msgs/msg/BatteryState': BatteryState, 'sensor_msgs/msg/Temperature': Temperature,
    'dynofa_ros/msg/PlatformLoad': PlatformLoad, 'dynofa_ros/msg/PerformanceTarget': PerformanceTarget,
    'diagnostic_msgs/msg/DiagnosticArray': DiagnosticArray,
}
FALLBACK_DRAIN_S = 0.5  # without wait_for_all_acked: time given to the last messages before exit
SLICE_S = 0.05  # longest the playback blocks the executor at a time
DISCOVERY_SETTLE_S = 0.25


def _time(nanoseconds: int) -> Time:
    return Time(sec=nanoseconds // 1_000_000_000, nanosec=nanoseconds % 1_000_000_000)


def qos_profile(qos: ReplayQos) -> QoSProfile:
    return QoSProfile(
        history=HistoryPolicy.KEEP_ALL if qos.keep_all else HistoryPolicy.KEEP_LAST, depth=qos.depth,
        reliability=ReliabilityPolicy.BEST_EFFORT if qos.reliability == 'best_effort'
        else ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if qos.durability == 'transient_local'
        else DurabilityPolicy.VOLATILE)


class BagPlayer(Node):
    """Opens and checks the bag and declares every publisher at construction; plays from a timer."""

    def __init__(self) -> None:
        super().__init__('bag_player')
        self._declare()
        self.bag = Bag(self.bag_path)
        try:
            self._create_publishers()
        except BaseException:
            self.bag.close()
            raise
        self.clock_pub = self.create_publisher(Clock, '/clock', 10) if self.clock_period_s else None
        self._steps, self._wake_at, self._next_tick = self._playback(), 0.0, 0.0
        # Steady: with use_sim_time the node's clock would follow the /clock this player publishes.
        self.create_timer(0.0, self._step, clock=RclpyClock(clock_type=ClockType.STEADY_TIME))

    def _declare(self) -> None:
        def param(name, default, text):
            return self.declare_parameter(name, default, describe(text, read_only=True)).value
        self.bag_path = param('bag', '', 'Bag folder (with or without metadata.yaml), .db3 or .mcap file.')
        self.rate = check_positive('rate', param('rate', 1.0, 'Playback speed factor (> 0).'))
        self.loop = param('loop', False, 'Start again at the end (time jumps backwards; nodes must cope).')
        self.topics = list(param('topics', [''], 'Replay only these topics (bag names, before any '
                                 '-r remapping); empty: every replayable topic.'))
        clock_hz = check_positive('clock_rate_hz', param(
            'clock_rate_hz', 40.0, 'Publish /clock at this wall-clock rate, carrying bag time that runs '
            'at `rate` (like ros2 bag play --clock); 0: no /clock.'), allow_zero=True)
        self.clock_period_s = 1.0 / clock_hz if clock_hz else 0.0
        self.wait_s = check_positive('wait_for_subscribers_s', param(
            'wait_for_subscribers_s', 5.0, 'Once, before the first pass: wait up to this long for every '
            'replayed topic to have a subscriber (messages sent before discovery are lost).'),
            allow_zero=True)
        self.ack_timeout_s = check_positive('ack_timeout_s', param(
            'ack_timeout_s', 5.0, 'At the end, wait up to this long for reliable subscribers to '
            'acknowledge the last messages.'), allow_zero=True)
        self.topics = [t for t in self.topics if t]
        if not self.bag_path:
            raise ValueError('parameter bag is required: a bag folder, .db3 or .mcap file')

    def _create_publishers(self) -> None:
        play, warnings = select_topics(self.bag.topics.values(), REPLAYABLE, self.topics)
        for warning in warnings:
            self.get_logger().warning(warning)
        if not play:
            raise BagError(f'{self.bag.path}: nothing to replay (topics in the bag: '
                           f'{sorted(f"{t.name} ({t.msgtype})" for t in self.bag.topics.values())})')
        self.publishers_by_topic = {topic.name: self._publisher(topic) for topic in play}

    def _publisher(self, topic: BagTopic):
        qos, note = replay_qos(topic.offered)
        if note:
            self.get_logger().warning(f'{topic.name}: {note}')
        publisher = self.create_publisher(REPLAYABLE[topic.msgtype], topic.name, qos_profile(qos))
        self.get_logger().info(f'replaying {topic.name} ({topic.msgtype}, {topic.count} messages) on '
                               f'{publisher.topic_name}: {qos.reliability}, {qos.durability}, '
                               f'{"keep all" if qos.keep_all else f"depth {qos.depth}"}')
        return publisher

    def _step(self) -> None:
        """One slice of playback (sleeping at most SLICE_S), so run_node sees a stop request in between.

        When playback ends, SystemExit(0) (or 1 for an unreadable bag) leaves the spin loop; run_node
        still destroys the node while the context is valid.
        """
        now = time.monotonic()
        if self._wake_at > now:
            time.sleep(min(self._wake_at - now, SLICE_S))
            return
        try:
            self._wake_at = next(self._steps)
        except StopIteration:
            raise SystemExit(0) from None
        except BagError as exc:
            self.get_logger().fatal(f'cannot play: {exc}')
            raise SystemExit(1) from None

    def _playback(self) -> Iterator[float]:
        """The whole run as a generator of wall-clock (monotonic) times to resume at."""
        yield from self._wait_for_subscribers()
        while True:
            count = yield from self._pass()
            self.get_logger().info(f'replayed {count} messages from {self.bag.path}')
            if not self.loop or count == 0:
                break
        yield from self._wait_for_delivery()

    def _pass(self) -> Generator[float, None, int]:
        """One pass at `rate`, /clock ticking in between; returns the number of messages published."""
        published, timeline = 0, None
        for topic, stamp_ns, raw in self.bag.messages(self.publishers_by_topic):
            if timeline is None:
                timeline = Timeline(stamp_ns, time.monotonic(), self.rate)
                self._next_tick = timeline.wall_start
            yield from self._until(timeline.wall_at(stamp_ns), timeline)
            publisher = self.publishers_by_topic[topic]
            try:
                message = deserialize_message(bytes(raw), publisher.msg_type)
            except Exception as exc:  # rclpy raises several types for malformed CDR
                raise BagError(f'{self.bag.path}: corrupt message on {topic} at {stamp_ns} ns: {exc}') \
                    from None
            publisher.publish(message)
            published += 1
        if timeline is not None:
            self._tick(timeline.bag_at(time.monotonic()))
        return published

    def _until(self, due: float, timeline: Timeline) -> Iterator[float]:
        """Resume times until wall time `due`, publishing /clock on its steady schedule meanwhile."""
        while True:
            now = time.monotonic()
            if self.clock_pub is not None and self._next_tick <= min(now, due):
                self._tick(timeline.bag_at(now))
                # Late (loaded machine): resume the schedule from now instead of bursting to catch up.
                self._next_tick = max(self._next_tick + self.clock_period_s, now)
                continue
            if now >= due:
                return
            yield min(due, self._next_tick) if self.clock_pub is not None else due

    def _tick(self, bag_ns: int) -> None:
        if self.clock_pub is not None:
            self.clock_pub.publish(Clock(clock=_time(bag_ns)))

    def _wait_for_subscribers(self) -> Iterator[float]:
        deadline = time.monotonic() + self.wait_s
        while time.monotonic() < deadline and any(
                publisher.get_subscription_count() == 0 for publisher in self.publishers_by_topic.values()):
            yield time.monotonic() + 0.05
        # The count says our writers know the readers; a best-effort reader drops samples until it knows
        # our writer too (reliable ones recover them), so give discovery's other half a moment.
        if self.wait_s > 0:
            yield time.monotonic() + DISCOVERY_SETTLE_S

    def _wait_for_delivery(self) -> Iterator[float]:
        """Until reliable subscribers have acknowledged everything sent (bounded by ack_timeout_s)."""
        pending = [*self.publishers_by_topic.values(), *([self.clock_pub] if self.clock_pub else [])]
        deadline = time.monotonic() + self.ack_timeout_s
        while pending and time.monotonic() < deadline:
            wait = getattr(pending[0], 'wait_for_all_acked', None)  # rclpy >= Galactic; guarded anyway
            if wait is None:
                yield time.monotonic() + min(FALLBACK_DRAIN_S, self.ack_timeout_s)
                return
            if wait(Duration(nanoseconds=int(SLICE_S * 1e9))):
                pending.pop(0)
            else:
                yield time.monotonic()
        if pending and self.ack_timeout_s > 0:  # 0: the user chose not to wait
            self.get_logger().warning(f'not every subscriber acknowledged the last messages within '
                                      f'{self.ack_timeout_s:g} s on {[p.topic_name for p in pending]}')

    def destroy_node(self) -> None:
        self._steps.close()
        self.bag.close()
        super().destroy_node()


def main(args=None) -> None:
    run_node(BagPlayer, 'bag_player', args)
