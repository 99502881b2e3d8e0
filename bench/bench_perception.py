#!/usr/bin/env python3
"""Perception node benchmark: node overhead, sustained throughput, latency with an over-fast camera.

    source ws/env.sh && python bench/bench_perception.py [--table T] [--seconds 8]

Runs the installed perception node as a real process fed by this script over DDS (640x480 rgb8), on the
fastest and the most accurate operating point, and writes bench/results/perception.json (+ .md):
- overhead: the node's own time from image callback to result publication minus the model's forward
  time (decode, resize/normalise, top-k, message building; `node_latency_ms - inference_ms`), with
  frames sent one at a time so no queueing is included; also the DDS round trip seen by this script;
- throughput: frames/s served with a 120 Hz camera, faster than the node serves (keep-latest drops the rest);
- overload: p95 of node latency and of result age (receipt minus stamp) at twice the model's rate.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import threading
import time
from pathlib import Path

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from sensor_msgs.msg import Image

from dynofa_ros.msg import InferenceResult, SubnetDecision, WorkloadStatus
from dynofa_ros.nodes.image_conversion import array_to_image
from dynofa_ros.operating_points import load_table
from dynofa_ros.process_launch import ros_graph

REPO = Path(__file__).resolve().parents[1]
WORKLOAD = 'bench'
SATURATING_CAMERA_HZ = 120.0  # faster than the node serves, without flooding DDS on 2 cores


def percentiles(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=np.float64)
    return {'median': round(float(np.median(arr)), 3), 'p95': round(float(np.percentile(arr, 95)), 3),
            'n': int(arr.size)}


class Driver:
    """Publishes frames and collects results and statuses, spinning in a background thread."""

    def __init__(self, domain_id: int) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node('bench_driver', context=self.context)
        self.images = self.node.create_publisher(Image, 'image', 10)
        self.decisions = self.node.create_publisher(SubnetDecision, 'subnet_decision', 10)
        self.results: list[tuple[float, InferenceResult]] = []
        self.statuses: list[WorkloadStatus] = []
        self.node.create_subscription(InferenceResult, 'inference_result',
                                      lambda m: self.results.append((time.time(), m)), 100)
        self.node.create_subscription(WorkloadStatus, 'workload_status', self.statuses.append, 10)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()
        self.seq = 0

    def frame(self, pixels: np.ndarray):
        self.seq += 1
        msg = array_to_image(pixels, 'rgb8')
        msg.header.stamp = self.node.get_clock().now().to_msg()
        msg.header.frame_id = f'bench/{self.seq}'
        return msg

    def send_and_wait(self, pixels: np.ndarray, timeout: float = 10.0) -> tuple[float, InferenceResult] | None:
        msg = self.frame(pixels)
        sent = time.time()
        self.images.publish(msg)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for received, result in reversed(self.results[-5:]):
                if result.header.frame_id == msg.header.frame_id:
                    return received - sent, result
            time.sleep(0.0005)
        return None

    def switch(self, subnet_id: str) -> None:
        self.decisions.publish(SubnetDecision(workload=WORKLOAD, subnet_id=subnet_id, reason='bench'))
        time.sleep(0.3)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


def stream(driver: Driver, pixels: np.ndarray, rate_hz: float, seconds: float) -> dict:
    """Publish at rate_hz and summarise what was served.

    Served frames come from the node's own counters (WorkloadStatus.frames_processed over the status
    stamps), not from results this process managed to receive while busy publishing.
    """
    def last_status() -> WorkloadStatus:
        time.sleep(0.5)  # at least one fresh status (5 Hz)
        return driver.statuses[-1]

    before = last_status()
    start_results = len(driver.results)
    msg_cache = driver.frame(pixels)
    t0 = time.monotonic()
    sent = 0
    while time.monotonic() - t0 < seconds:
        msg_cache.header.stamp = driver.node.get_clock().now().to_msg()
        driver.images.publish(msg_cache)
        sent += 1
        time.sleep(max(0.0, t0 + sent / rate_hz - time.monotonic()))
    after = last_status()
    span = (after.header.stamp.sec - before.header.stamp.sec) + \
        (after.header.stamp.nanosec - before.header.stamp.nanosec) * 1e-9
    window = driver.results[start_results:]
    ages = [(wall - (r.header.stamp.sec + r.header.stamp.nanosec * 1e-9)) * 1e3 for wall, r in window]
    return {'sent_fps': round(sent / seconds, 1),
            'served_fps': round((after.frames_processed - before.frames_processed) / span, 1),
            'dropped': after.frames_dropped - before.frames_dropped,
            'node_latency_ms': percentiles([r.node_latency_ms for _, r in window]),
            'result_age_ms': percentiles(ages)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--table', default=str(REPO / 'config' / 'operating_points' / 'fmnist28_ofa_mbv3.yaml'))
    parser.add_argument('--seconds', type=float, default=8.0)
    parser.add_argument('--frames', type=int, default=200, help='one-at-a-time frames for the overhead')
    parser.add_argument('--qos', choices=('reliable', 'best_effort'), default='reliable',
                        help="the node's qos_reliability; Fast DDS loses many large best-effort frames")
    parser.add_argument('--out', default=None, help='default: bench/results/perception_<qos>.json')
    args = parser.parse_args()
    args.out = args.out or str(REPO / 'bench' / 'results' / f'perception_{args.qos}.json')
    table = load_table(args.table)
    points = {'fastest': table.by_latency('cpu')[0].id,
              'most_accurate': max(table.points, key=lambda p: p.accuracy).id}
    pixels = np.random.default_rng(0).integers(0, 256, size=(480, 640, 3), dtype=np.uint8)
    report: dict = {'machine': {'cpu_count': os.cpu_count(), 'processor': platform.processor(),
                                'load_avg_1m_at_start': os.getloadavg()[0]},
                    'input': '640x480 rgb8 over DDS (Fast DDS, localhost)', 'table': args.table,
                    'qos_reliability': args.qos,
                    'threads': 1, 'points': {}}
    with ros_graph() as graph:
        graph.start('perception_node', parameters={'workload': WORKLOAD, 'operating_points': args.table,
                                                   'threads': 1, 'status_rate_hz': 5.0,
                                                   'qos_reliability': args.qos})
        driver = Driver(graph.domain_id)
        try:
            deadline = time.monotonic() + 120
            while driver.send_and_wait(pixels, timeout=1.0) is None:
                if time.monotonic() > deadline:
                    raise RuntimeError('perception node did not answer:\n' + graph.dump_logs())
            for label, subnet_id in points.items():
                driver.switch(subnet_id)
                for _ in range(10):  # warm-up on this sub-network
                    driver.send_and_wait(pixels)
                attempts = [driver.send_and_wait(pixels, timeout=2.0) for _ in range(args.frames)]
                samples = [s for s in attempts if s]
                overhead = [r.node_latency_ms - r.inference_ms for _, r in samples]
                model = [r.inference_ms for _, r in samples]
                model_fps = 1e3 / float(np.median([r.node_latency_ms for _, r in samples]))
                entry = {
                    'subnet_id': subnet_id,
                    'frames_lost_in_transport': len(attempts) - len(samples),
                    'overhead_ms': percentiles(overhead),
                    'stages_ms': {'preprocess': percentiles([r.preprocess_ms for _, r in samples]),
                                  'inference': percentiles(model),
                                  'postprocess': percentiles([r.postprocess_ms for _, r in samples])},
                    'dds_round_trip_minus_inference_ms': percentiles(
                        [rt * 1e3 - r.inference_ms for rt, r in samples]),
                    'max_throughput': stream(driver, pixels, SATURATING_CAMERA_HZ, args.seconds),
                    'camera_at_twice_model_rate': {'camera_hz': round(2 * model_fps, 1),
                                                   **stream(driver, pixels, 2 * model_fps, args.seconds)},
                }
                report['points'][label] = entry
                print(label, json.dumps(entry, indent=1), flush=True)
        finally:
            driver.close()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + '\n')
    lines = ['# Perception node benchmark', '', f'Input {report["input"]}, subscription QoS {args.qos}, 1 torch thread, '
             f'table `{Path(args.table).name}`,'
             f' load average at start {report["machine"]["load_avg_1m_at_start"]:.2f}. Produced by '
             '`python bench/bench_perception.py`.', '',
             '| point | frames lost (of sent one at a time) | overhead median / p95 ms | model median ms | '
             'served fps (120 Hz camera) | at 2x model rate: node p95 ms, age p95 ms |',
             '|---|---|---|---|---|---|']
    for label, e in report['points'].items():
        o, m = e['overhead_ms'], e['stages_ms']['inference']
        twice = e['camera_at_twice_model_rate']
        lines.append(f'| {label} | {e["frames_lost_in_transport"]} of {args.frames} | '
                     f'{o["median"]:.2f} / {o["p95"]:.2f} | {m["median"]:.2f} | '
                     f'{e["max_throughput"]["served_fps"]} | {twice["node_latency_ms"]["p95"]:.1f}, '
                     f'{twice["result_age_ms"]["p95"]:.1f} |')
    out.with_suffix('.md').write_text('\n'.join(lines) + '\n')
    print('wrote', out)


if __name__ == '__main__':
    main()
