"""Replay a rosbag2 (sqlite3 or mcap) into the graph, publishing /clock, where `ros2 bag` is not installed.

    ros2 run dynofa_ros bag_player --ros-args -p bag:=/path/to/bag -p loop:=true
Nodes set `use_sim_time:=true` to follow the bag's clock, as with `ros2 bag play --clock`. Reading goes
through `rosbags` and the raw CDR is deserialised by rclpy into an allowlisted set of message types;
nothing from the bag is imported, evaluated or unpickled.
"""
from __future__ import annotations

import time
from pathlib import Path

import rclpy
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.serialization import deserialize_message
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import BatteryState, CompressedImage, Image, Temperature

from dynofa_ros.msg import PerformanceTarget, PlatformLoad
from dynofa_ros.nodes.parameters import describe

REPLAYABLE = {
    'sensor_msgs/msg/Image': Image, 'sensor_msgs/msg/CompressedImage': CompressedImage,
    'sensor_msgs/msg/BatteryState': BatteryState, 'sensor_msgs/msg/Temperature': Temperature,
    'dynofa_ros/msg/PlatformLoad': PlatformLoad, 'dynofa_ros/msg/PerformanceTarget': PerformanceTarget,
    'diagnostic_msgs/msg/DiagnosticArray': DiagnosticArray,
}


def _time(nanoseconds: int) -> Time:
    return Time(sec=nanoseconds // 1_000_000_000, nanosec=nanoseconds % 1_000_000_000)


class BagPlayer(Node):
    def __init__(self) -> None:
        super().__init__('bag_player')
        self.bag = Path(self.declare_parameter('bag', '', describe('rosbag2 folder to replay.')).value)
        self.rate = self.declare_parameter('rate', 1.0, describe('Playback speed factor.')).value
        self.loop = self.declare_parameter('loop', False, describe('Start again at the end (time jumps '
                                                                    'backwards; nodes must cope).')).value
        self.wait_s = self.declare_parameter('wait_for_subscribers_s', 5.0, describe(
            'Before playing, wait up to this long for every replayed topic to have a subscriber '
            '(messages published before discovery completes are lost).')).value
        if not self.bag.is_dir():
            raise FileNotFoundError(f'bag folder {self.bag} does not exist')
        if self.rate <= 0:
            raise ValueError(f'rate must be positive, got {self.rate}')
        self.clock_pub = self.create_publisher(Clock, '/clock', 10)
        self.publishers_by_topic: dict[str, object] = {}

    def play_once(self) -> int:
        """Replay the bag at `rate`, publishing /clock at message times; returns messages published."""
        from rosbags.rosbag2 import Reader
        published = 0
        with Reader(self.bag) as reader:
            connections = [c for c in reader.connections if c.msgtype in REPLAYABLE]
            skipped = sorted({f'{c.topic} ({c.msgtype})' for c in reader.connections} -
                             {f'{c.topic} ({c.msgtype})' for c in connections})
            if skipped:
                self.get_logger().warning(f'not replaying topics of unsupported types: {skipped}')
            for connection in connections:
                if connection.topic not in self.publishers_by_topic:
                    self.publishers_by_topic[connection.topic] = self.create_publisher(
                        REPLAYABLE[connection.msgtype], connection.topic, 10)
            self._wait_for_subscribers()
            wall_start, bag_start = time.monotonic(), None
            for connection, stamp_ns, raw in reader.messages(connections=connections):
                bag_start = stamp_ns if bag_start is None else bag_start
                delay = (stamp_ns - bag_start) / 1e9 / self.rate - (time.monotonic() - wall_start)
                if delay > 0:
                    time.sleep(delay)
                if not rclpy.ok():
                    break
                self.clock_pub.publish(Clock(clock=_time(stamp_ns)))
                message = deserialize_message(bytes(raw), REPLAYABLE[connection.msgtype])
                self.publishers_by_topic[connection.topic].publish(message)
                published += 1
        return published

    def _wait_for_subscribers(self) -> None:
        deadline = time.monotonic() + self.wait_s
        while time.monotonic() < deadline and rclpy.ok() and any(
                publisher.get_subscription_count() == 0 for publisher in self.publishers_by_topic.values()):
            time.sleep(0.05)

    def run(self) -> None:
        while rclpy.ok():
            count = self.play_once()
            self.get_logger().info(f'replayed {count} messages from {self.bag}')
            if not self.loop:
                break


def main(args=None) -> None:
    rclpy.init(args=args)
    node = BagPlayer()
    try:
        node.run()
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
