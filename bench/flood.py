#!/usr/bin/env python3
"""Flood benchmark: the perception node's served rate when the camera runs at 1x, 2x, 5x and 10x its model rate.

    source ws/env.sh && nice python bench/flood.py [--size 224] [--seconds 6] [--repeats 3]

The installed perception node runs as a real process (1 torch thread, default QoS: best effort, depth 1,
on the most accurate operating point). First, unloaded: frames are sent one at a time, each after the
previous result, giving the model period (median pre-processing + inference + post-processing, as the
node reports it) and the unloaded served rate. Then a camera process (this script with --camera)
publishes 224x224 rgb8 frames as fast as each level asks; its achieved send rate is reported as measured.
Levels are interleaved and repeated. For each: served rate (results whose stamp falls in the window,
divided by its length) as a ratio to the unloaded model rate, and result age (receipt minus header stamp)
p50/p95 in model periods. Writes bench/results/flood.json and .md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
WORKLOAD = 'flood'
SETTLE_S = 1.0  # the start of each level is not measured (discovery, the first frames)


def camera_main(args: argparse.Namespace) -> None:
    """Publish pre-serialized frames at `rate` Hz for `seconds`, patching the stamp in the CDR bytes."""
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import Image

    from dynofa_ros.nodes.image_conversion import array_to_image
    rclpy.init()
    node = rclpy.create_node('flood_camera')
    pub = node.create_publisher(Image, 'image', QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))
    pixels = np.random.default_rng(0).integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)
    msg = array_to_image(pixels, 'rgb8')
    msg.header.frame_id = 'flood'
    buffer = bytearray(serialize_message(msg))  # the stamp is the first field after the 4-byte CDR header
    deadline = time.monotonic() + 30
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    sent, t0 = 0, time.monotonic()
    while (now := time.monotonic()) - t0 < args.seconds:
        stamp = time.time()
        struct.pack_into('<iI', buffer, 4, int(stamp), int((stamp % 1) * 1e9))
        pub.publish(bytes(buffer))
        sent += 1
        time.sleep(max(0.0, t0 + sent / args.rate - time.monotonic()))
    print(json.dumps({'sent': sent, 'seconds': round(now - t0, 3), 'cpu_s': round(time.process_time(), 3)}),
          flush=True)
    node.destroy_node()
    rclpy.try_shutdown()


class Driver:
    """Collects results (with receipt wall time) and statuses; sends single frames for the unloaded run."""

    def __init__(self, domain_id: int, size: int) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from sensor_msgs.msg import Image

        from dynofa_ros.msg import InferenceResult, WorkloadStatus
        from dynofa_ros.nodes.image_conversion import array_to_image
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node('flood_driver', context=self.context)
        self.images = self.node.create_publisher(Image, 'image', 10)
        self.results: list[tuple[float, object]] = []
        self.statuses: list[object] = []
        self.node.create_subscription(InferenceResult, 'inference_result',
                                      lambda m: self.results.append((time.time(), m)), 100)
        self.node.create_subscription(WorkloadStatus, 'workload_status', self.statuses.append, 10)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        threading.Thread(target=self.executor.spin, daemon=True).start()
        pixels = np.random.default_rng(1).integers(0, 256, (size, size, 3), dtype=np.uint8)
        self.msg = array_to_image(pixels, 'rgb8')
        self.seq = 0

    def send_and_wait(self, timeout: float = 2.0):
        self.seq += 1
        self.msg.header.frame_id = f'single/{self.seq}'
        stamp = time.time()
        self.msg.header.stamp.sec, self.msg.header.stamp.nanosec = int(stamp), int((stamp % 1) * 1e9)
        self.images.publish(self.msg)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for _, result in reversed(self.results[-5:]):
                if result.header.frame_id == self.msg.header.frame_id:
                    return result
            time.sleep(0.0005)
        return None

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


def stamp_s(msg) -> float:
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


def unloaded(driver: Driver, seconds: float) -> dict:
    """Frames one at a time: the model period and the served rate without any queueing or flood."""
    for _ in range(20):  # warm-up
        driver.send_and_wait()
    served, model_ms, t0 = 0, [], time.monotonic()
    while time.monotonic() - t0 < seconds:
        result = driver.send_and_wait()
        if result is not None:
            served += 1
            model_ms.append(result.preprocess_ms + result.inference_ms + result.postprocess_ms)
    period_ms = float(np.median(model_ms))
    return {'model_period_ms': round(period_ms, 3), 'model_rate_hz': round(1e3 / period_ms, 2),
            'served_one_at_a_time_hz': round(served / (time.monotonic() - t0), 2), 'frames': served}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all threads (Linux /proc)."""
    fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def flood_level(driver: Driver, env: dict, size: int, rate: float, seconds: float, period_ms: float,
                node_pid: int) -> dict:
    """One camera process at `rate` Hz; what the node served of it, how old the results were, CPU used."""
    statuses_before = len(driver.statuses)
    cpu_before, wall_before = cpu_seconds(node_pid), time.monotonic()
    camera = subprocess.run([sys.executable, __file__, '--camera', '--rate', str(rate), '--seconds', str(seconds),
                             '--size', str(size)], env=env, capture_output=True, text=True, timeout=seconds + 60)
    if camera.returncode != 0:
        raise RuntimeError(f'camera failed: {camera.stderr[-2000:]}')
    sent = json.loads(camera.stdout.strip().splitlines()[-1])
    node_cpu = (cpu_seconds(node_pid) - cpu_before) / (time.monotonic() - wall_before)
    time.sleep(0.5)  # results in flight
    results = [(wall, r) for wall, r in driver.results if r.header.frame_id == 'flood']
    if not results:
        return {'camera_hz': round(rate, 1), 'sent_hz': round(sent['sent'] / sent['seconds'], 1),
                'received_by_node_hz': 0.0, 'served_hz': 0.0, 'age_periods': {'p50': None, 'p95': None, 'max': None}}
    first = min(stamp_s(r) for _, r in results)  # the camera's first frame that was served
    window = [(wall, r) for wall, r in results if first + SETTLE_S <= stamp_s(r) <= first + sent['seconds']]
    span = sent['seconds'] - SETTLE_S
    ages = np.array([(wall - stamp_s(r)) * 1e3 for wall, r in window]) / period_ms
    statuses = [s for s in driver.statuses[statuses_before:]
                if first + SETTLE_S <= stamp_s(s) <= first + sent['seconds']]
    received = (statuses[-1].frames_received - statuses[0].frames_received) if len(statuses) > 1 else 0
    status_span = stamp_s(statuses[-1]) - stamp_s(statuses[0]) if len(statuses) > 1 else 1.0
    driver.results.clear()
    return {'camera_hz': round(rate, 1), 'sent_hz': round(sent['sent'] / sent['seconds'], 1),
            'received_by_node_hz': round(received / max(status_span, 1e-9), 1),
            'served_hz': round(len(window) / span, 2),
            'model_ms_median': round(float(np.median([r.preprocess_ms + r.inference_ms + r.postprocess_ms
                                                      for _, r in window])), 3) if window else None,
            'result_interval_ms_median': round(float(np.median(np.diff(sorted(w for w, _ in window)))) * 1e3, 3)
            if len(window) > 1 else None,
            'node_cpu_cores': round(node_cpu, 3), 'camera_cpu_cores': round(sent['cpu_s'] / sent['seconds'], 3),
            'age_periods': {'p50': round(float(np.percentile(ages, 50)), 2) if ages.size else None,
                            'p95': round(float(np.percentile(ages, 95)), 2) if ages.size else None,
                            'max': round(float(ages.max()), 2) if ages.size else None}}


def measure(driver: Driver, env: dict, args: argparse.Namespace, node_pid: int) -> dict[str, list[dict]]:
    """Repeats of [unloaded, then every level]; levels rotate so each repeat starts at another one.

    The unloaded rate is re-measured in every repeat and each level's ratio uses its own repeat's, so a
    change in the machine's load between repeats does not bias the ratios.
    """
    runs: dict[str, list[dict]] = {'unloaded': [], **{f'{level:g}x': [] for level in args.levels}}
    for repeat in range(args.repeats):
        base = unloaded(driver, args.seconds)
        runs['unloaded'].append(base)
        print('unloaded', base, flush=True)
        first_rate = runs['unloaded'][0]['model_rate_hz']
        shift = repeat % len(args.levels)
        for level in args.levels[shift:] + args.levels[:shift]:
            entry = flood_level(driver, env, args.size, level * first_rate, args.seconds, base['model_period_ms'],
                                node_pid)
            entry['served_ratio'] = round(entry['served_hz'] / base['model_rate_hz'], 3)
            runs[f'{level:g}x'].append(entry)
            print(f'{level:g}x', entry, flush=True)
    return runs


def summarise(runs: dict[str, list[dict]]) -> dict:
    summary = {}
    for level, entries in runs.items():
        if level == 'unloaded':
            continue
        served = [e['served_hz'] for e in entries]
        ratios = [e['served_ratio'] for e in entries]
        p95 = [e['age_periods']['p95'] for e in entries if e['age_periods']['p95'] is not None]
        summary[level] = {'sent_hz_median': float(np.median([e['sent_hz'] for e in entries])),
                          'received_hz_median': float(np.median([e.get('received_by_node_hz', 0.0)
                                                                 for e in entries])),
                          'served_hz_median': float(np.median(served)),
                          'served_ratio_median': round(float(np.median(ratios)), 3),
                          'served_ratio_min': round(min(ratios), 3),
                          'age_p50_periods_median': float(np.median([e['age_periods']['p50'] for e in entries
                                                                     if e['age_periods']['p50'] is not None])),
                          'age_p95_periods_median': float(np.median(p95)) if p95 else None,
                          'age_p95_periods_max': max(p95) if p95 else None}
    return summary


def write_markdown(report: dict, out: Path) -> None:
    u = report['unloaded']
    periods = [e['model_period_ms'] for e in report['runs']['unloaded']]
    lines = ['# Perception flood benchmark', '',
             f"{report['input']}, most accurate point `{report['subnet_id'][:24]}...`, 1 torch thread, default "
             f"QoS (best effort, depth 1), {report['repeats']} interleaved repeats of {report['seconds']} s per level, "
             f"load average {report['machine']['load_avg_1m_at_start']:.2f} at start "
             f"({report['machine']['cpu_count']} cores shared). Produced by `{report['command']}`.", '',
             f"Unloaded (one frame at a time, re-measured in each repeat): model period "
             f"{', '.join(f'{p:.2f}' for p in periods)} ms (pre-processing + inference + post-processing, median; "
             f"the first, {u['model_rate_hz']:.1f} Hz, sets the camera rates); served one at a time "
             f"{u['served_one_at_a_time_hz']:.1f} Hz (includes the DDS round trip). Ratios and ages use each "
             "repeat's own model period.", '',
             '| camera | asked Hz | sent Hz (median) | received by the node Hz | served Hz (median) | served / model rate (median, min) | '
             'age p50 periods | age p95 periods (median, max) |', '|---|---|---|---|---|---|---|---|']
    for level, s in report['summary'].items():
        asked = float(level.rstrip('x')) * u['model_rate_hz']
        lines.append(f"| {level} | {asked:.0f} | {s['sent_hz_median']:.0f} | {s['received_hz_median']:.0f} | "
                     f"{s['served_hz_median']:.1f} | "
                     f"{s['served_ratio_median']:.2f}, {s['served_ratio_min']:.2f} | {s['age_p50_periods_median']:.2f} | "
                     f"{s['age_p95_periods_median']:.2f}, {s['age_p95_periods_max']:.2f} |")
    ten = report['summary'].get('10x')
    if ten:
        ok = ten['served_ratio_median'] >= 0.9 and ten['age_p95_periods_median'] <= 2.0
        lines += ['', f"Done-when (issue 13: at 10x, served >= 0.90 of the model rate and age p95 <= 2 periods): "
                      f"{'met' if ok else 'NOT met'} (served {ten['served_ratio_median']:.2f}, age p95 "
                      f"{ten['age_p95_periods_median']:.2f} periods, medians over repeats)."]
    out.with_suffix('.md').write_text('\n'.join(lines) + '\n')


def run(args: argparse.Namespace) -> dict:
    from dynofa_ros.operating_points import load_table
    from dynofa_ros.process_launch import ros_graph
    table = load_table(args.table)
    subnet_id = max(table.points, key=lambda p: p.accuracy).id
    report: dict = {'machine': {'cpu_count': os.cpu_count(), 'processor': platform.processor(),
                                'load_avg_1m_at_start': os.getloadavg()[0]},
                    'input': f'{args.size}x{args.size} rgb8 over DDS (localhost), camera pre-serialized, reliable depth 5',
                    'command': 'python bench/flood.py ' + ' '.join(sys.argv[1:]),
                    'table': str(args.table), 'subnet_id': subnet_id, 'seconds': args.seconds,
                    'repeats': args.repeats, 'levels': args.levels}
    with ros_graph() as graph:
        node = graph.start('perception_node', name='perception', parameters={
            'workload': WORKLOAD, 'operating_points': str(args.table), 'threads': 1, 'status_rate_hz': 5.0,
            'initial_subnet': subnet_id})
        driver = Driver(graph.domain_id, args.size)
        try:
            deadline = time.monotonic() + 120
            while driver.send_and_wait(timeout=1.0) is None:
                if time.monotonic() > deadline:
                    raise RuntimeError('the perception node did not answer:\n' + graph.dump_logs())
            report['runs'] = measure(driver, graph.env, args, node.process.pid)
            report['unloaded'] = report['runs']['unloaded'][0]  # sets the camera rates of every level
            report['summary'] = summarise(report['runs'])
        finally:
            driver.close()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--table', default=str(REPO / 'config' / 'operating_points' / 'fmnist_ofa_mbv3.yaml'))
    parser.add_argument('--size', type=int, default=224, help='square rgb8 frame side')
    parser.add_argument('--seconds', type=float, default=6.0, help='per level and repeat')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--levels', type=float, nargs='+', default=[1.0, 2.0, 5.0, 10.0])
    parser.add_argument('--out', default=str(REPO / 'bench' / 'results' / 'flood.json'))
    parser.add_argument('--camera', action='store_true', help=argparse.SUPPRESS)  # the camera subprocess
    parser.add_argument('--rate', type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.camera:
        camera_main(args)
        return
    report = run(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + '\n')
    write_markdown(report, out)
    print(json.dumps(report['summary'], indent=1))
    print('wrote', out)


if __name__ == '__main__':
    main()
