#!/usr/bin/env python3
"""Flood benchmark: the perception node's served rate when the camera runs at 1x, 2x, 5x and 10x its model rate.

    source ws/env.sh && nice python bench/flood.py [--size 224] [--seconds 5] [--repeats 3] [--baseline 634eec3]

The installed perception node runs as a real process (1 torch thread, default QoS: best effort, depth 1,
on the most accurate operating point). First, unloaded: frames are sent one at a time, each after the
previous result, giving the model period (median pre-processing + inference + post-processing, as the
node reports it) and the unloaded served rate. Then a camera process (this script with --camera)
publishes 224x224 rgb8 frames as fast as each level asks; its achieved send rate is reported as measured.
Levels are interleaved and repeated. For each: served rate (results whose stamp falls in the window,
divided by its length) as a ratio to the unloaded model rate, and result age (receipt minus header stamp)
p50/p95 in model periods, with the CPU each process used. Each flood follows its own unloaded run
(the machine's load moves the model period within seconds). With --baseline REV the perception node of that
git revision is measured the same way, interleaved, on its own ROS domain (the alternative: the node
before the flood fix). Writes bench/results/flood.json and .md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import struct
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
WORKLOAD = 'flood'
SETTLE_S = 1.0  # the start of each level is not measured (discovery, the first frames)


def camera_main(args: argparse.Namespace) -> None:
    """Publish pre-serialized frames at `rate` Hz for `seconds`, patching the stamp in the CDR bytes."""
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import Image

    from dynofa_ros.nodes.image_conversion import array_to_image
    rclpy.init()
    node = rclpy.create_node('flood_camera')
    # sensor_data: what camera drivers offer (best effort, keep last 5); reliable queues frames in the writer
    qos = qos_profile_sensor_data if args.camera_qos == 'sensor_data' else QoSProfile(
        depth=5, reliability=ReliabilityPolicy.RELIABLE)
    pub = node.create_publisher(Image, 'image', qos)
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
        self.node = rclpy.create_node(f'flood_driver_{domain_id}', context=self.context)
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
    for _ in range(5):  # warm-up
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
                node_pid: int, camera_qos: str) -> dict:
    """One camera process at `rate` Hz; what the node served of it, how old the results were, CPU used."""
    statuses_before = len(driver.statuses)
    cpu_before, wall_before = cpu_seconds(node_pid), time.monotonic()
    camera = subprocess.run([sys.executable, __file__, '--camera', '--rate', str(rate), '--seconds', str(seconds),
                             '--size', str(size), '--camera-qos', camera_qos], env=env, capture_output=True,
                            text=True, timeout=seconds + 60)
    if camera.returncode != 0:
        raise RuntimeError(f'camera failed: {camera.stderr[-2000:]}')
    sent = json.loads(camera.stdout.strip().splitlines()[-1])
    node_cpu = (cpu_seconds(node_pid) - cpu_before) / (time.monotonic() - wall_before)
    time.sleep(0.5)  # results in flight
    results = [(wall, r) for wall, r in driver.results if r.header.frame_id == 'flood']
    if not results:
        return {'camera_hz': round(rate, 1), 'sent_hz': round(sent['sent'] / sent['seconds'], 1),
                'received_by_node_hz': 0.0, 'served_hz': 0.0, 'model_ms_median': None, 'node_cpu_cores': node_cpu,
                'camera_cpu_cores': None, 'age_periods': {'p50': None, 'p95': None, 'max': None},
                'node_latency_periods': {'p50': None, 'p95': None}}
    first = min(stamp_s(r) for _, r in results)  # the camera's first frame that was served
    window = [(wall, r) for wall, r in results if first + SETTLE_S <= stamp_s(r) <= first + sent['seconds']]
    span = sent['seconds'] - SETTLE_S
    ages = np.array([(wall - stamp_s(r)) * 1e3 for wall, r in window]) / period_ms
    in_node = np.array([r.node_latency_ms for _, r in window]) / period_ms  # arrival to publication
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
                            'max': round(float(ages.max()), 2) if ages.size else None},
            'node_latency_periods': {'p50': round(float(np.percentile(in_node, 50)), 2) if in_node.size else None,
                                     'p95': round(float(np.percentile(in_node, 95)), 2) if in_node.size else None}}


class Target:
    """One perception node under test, on its own ROS domain, with its own driver."""

    def __init__(self, label: str, env: dict, driver: Driver, pid: int) -> None:
        self.label, self.env, self.driver, self.pid = label, env, driver, pid
        self.runs: dict[str, list[dict]] = {'unloaded': []}


def measure(targets: list[Target], args: argparse.Namespace) -> None:
    """Repeats of every level, each node in turn (interleaved), each flood right after an unloaded run.

    The machine is shared: its load moves the model period by 2x within seconds, so each flood's ratio
    uses the unloaded model rate measured just before it, on the same node. Levels rotate so each repeat
    starts at another one. Camera rates are set by the first node's first unloaded model rate.
    """
    for repeat in range(args.repeats):
        shift = repeat % len(args.levels)
        for level in args.levels[shift:] + args.levels[:shift]:
            for t in targets:
                base = unloaded(t.driver, args.unloaded_seconds)
                t.runs['unloaded'].append(base)
                first_rate = targets[0].runs['unloaded'][0]['model_rate_hz']
                entry = flood_level(t.driver, t.env, args.size, level * first_rate, args.seconds,
                                    base['model_period_ms'], t.pid, args.camera_qos)
                entry['unloaded_model_rate_hz'] = base['model_rate_hz']
                entry['served_ratio'] = round(entry['served_hz'] / base['model_rate_hz'], 3)
                # share of the wall time spent in the model itself, a load-independent view of the overhead
                entry['model_duty'] = round(entry['served_hz'] * (entry['model_ms_median'] or 0.0) / 1e3, 3)
                t.runs.setdefault(f'{level:g}x', []).append(entry)
                print(t.label, f'{level:g}x', entry, flush=True)


def _median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return round(float(np.median(values)), 3) if values else None


def summarise(runs: dict[str, list[dict]]) -> dict:
    summary = {}
    for level, entries in runs.items():
        if level == 'unloaded':
            continue
        ratios = [e['served_ratio'] for e in entries]
        p95 = [e['age_periods']['p95'] for e in entries if e['age_periods']['p95'] is not None]
        summary[level] = {'sent_hz_median': _median([e['sent_hz'] for e in entries]),
                          'received_hz_median': _median([e['received_by_node_hz'] for e in entries]),
                          'served_hz_median': _median([e['served_hz'] for e in entries]),
                          'served_ratio_median': _median(ratios), 'served_ratio_min': min(ratios),
                          'model_ms_median': _median([e['model_ms_median'] for e in entries]),
                          'model_duty_median': _median([e['model_duty'] for e in entries]),
                          'node_cpu_cores_median': _median([e['node_cpu_cores'] for e in entries]),
                          'camera_cpu_cores_median': _median([e['camera_cpu_cores'] for e in entries]),
                          'age_p50_periods_median': _median([e['age_periods']['p50'] for e in entries]),
                          'age_p95_periods_median': _median(p95), 'age_p95_periods_max': max(p95) if p95 else None,
                          'node_latency_p95_periods_median': _median([e['node_latency_periods']['p95']
                                                                      for e in entries])}
    return summary


def _table(label: str, runs: dict, summary: dict) -> list[str]:
    periods = [e['model_period_ms'] for e in runs['unloaded']]
    single = [e['served_one_at_a_time_hz'] for e in runs['unloaded']]
    lines = [f'### {label}', '', f'Unloaded, one frame at a time, before each flood ({len(periods)} runs): model '
             f'period {min(periods):.1f}..{max(periods):.1f} ms, median {np.median(periods):.1f} '
             '(pre-processing + inference + post-processing); served one at a time '
             f'{min(single):.0f}..{max(single):.0f} Hz (including the DDS round trip).', '',
             '| camera | sent Hz | received by the node Hz | served Hz | served / model rate (median, min) | '
             'model ms | model duty | node CPU cores | camera CPU cores | age p50 periods | age p95 periods (median, max) | '
             'in-node latency p95 periods |', '|---|---|---|---|---|---|---|---|---|---|---|---|']
    for level, s in summary.items():
        lines.append(f"| {level} | {s['sent_hz_median']:.0f} | {s['received_hz_median']:.0f} | "
                     f"{s['served_hz_median']:.1f} | {s['served_ratio_median']:.2f}, {s['served_ratio_min']:.2f} | "
                     f"{s['model_ms_median']:.1f} | {s['model_duty_median']:.2f} | {s['node_cpu_cores_median']:.2f} | "
                     f"{s['camera_cpu_cores_median']:.2f} | {s['age_p50_periods_median']:.2f} | "
                     f"{s['age_p95_periods_median']:.2f}, {s['age_p95_periods_max']:.2f} | "
                     f"{s['node_latency_p95_periods_median']:.2f} |")
    return lines + ['']


def write_markdown(report: dict, out: Path) -> None:
    m = report['machine']
    lines = ['# Perception flood benchmark', '',
             f"{report['input']}; most accurate point `{report['subnet_id'][:24]}...`; 1 torch thread; the node's "
             f"default QoS (best effort, depth 1); {report['repeats']} interleaved repeats of {report['seconds']} s "
             f"per level and node; load average {m['load_avg_1m_at_start']:.2f} at start on {m['cpu_count']} "
             f"shared cores. Produced by `{report['command']}`. Served = results whose stamp is in the window "
             "(the first second of each level skipped); age = receipt minus header stamp, in model periods.", '']
    for label, target in report['nodes'].items():
        lines += _table(label, target['runs'], target['summary'])
    if len(report['nodes']) == 2:
        lines += ['### This node against the baseline (medians of served Hz)', '',
                  '| camera | node / baseline served |', '|---|---|']
        lines += [f'| {level} | {ratio:.2f} |' for level, ratio in report['node_vs_baseline_served'].items()]
        lines.append('')
    ten = report['nodes']['node']['summary'].get('10x')
    if ten:
        ok = ten['served_ratio_median'] >= 0.9 and ten['age_p95_periods_median'] <= 2.0
        lines.append(f"Done-when (issue 13: at 10x, served >= 0.90 of the model rate and age p95 <= 2 periods): "
                     f"{'met' if ok else 'NOT met'} (served {ten['served_ratio_median']:.2f}, age p95 "
                     f"{ten['age_p95_periods_median']:.2f} periods, medians over repeats).")
    out.with_suffix('.md').write_text('\n'.join(lines) + '\n')


def baseline_executable(rev: str, folder: Path) -> Path:
    """A runnable copy of the perception node as it was at git revision `rev` (the comparison)."""
    source = subprocess.run(['git', '-C', str(REPO), 'show', f'{rev}:dynofa_ros/nodes/perception_node.py'],
                            capture_output=True, text=True, check=True).stdout
    (folder / 'baseline_perception_node.py').write_text(source)
    script = folder / 'perception_node'
    script.write_text(f'#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(folder)!r})\n'
                      'import baseline_perception_node\nbaseline_perception_node.main()\n')
    script.chmod(0o755)
    return script


def start_target(stack: ExitStack, label: str, args: argparse.Namespace, domain_id: int, subnet_id: str,
                 executable: Path | None) -> Target:
    from dynofa_ros import process_launch
    graph = stack.enter_context(process_launch.ros_graph(domain_id))
    parameters = {'workload': WORKLOAD, 'operating_points': str(args.table), 'threads': 1,
                  'status_rate_hz': 5.0, 'initial_subnet': subnet_id}
    if executable is None:
        node = graph.start('perception_node', name='perception', parameters=parameters)
    else:  # NodeProcess finds executables in the install space; the baseline lives in a temp folder
        original = process_launch.node_executable
        process_launch.node_executable = lambda name: executable
        try:
            node = graph.start('perception_node', name='perception', parameters=parameters)
        finally:
            process_launch.node_executable = original
    driver = Driver(graph.domain_id, args.size)
    stack.callback(driver.close)
    deadline = time.monotonic() + 120
    while driver.send_and_wait(timeout=1.0) is None:
        if time.monotonic() > deadline:
            raise RuntimeError(f'{label} did not answer:\n' + graph.dump_logs())
    return Target(label, graph.env, driver, node.process.pid)


def run(args: argparse.Namespace) -> dict:
    from dynofa_ros.operating_points import load_table
    from dynofa_ros.process_launch import free_domain_id
    subnet_id = max(load_table(args.table).points, key=lambda p: p.accuracy).id
    report: dict = {'machine': {'cpu_count': os.cpu_count(), 'processor': platform.processor(),
                                'load_avg_1m_at_start': os.getloadavg()[0]},
                    'input': f'{args.size}x{args.size} rgb8 over DDS (localhost) from a camera process '
                             f'(pre-serialized, camera QoS {args.camera_qos})',
                    'command': 'python bench/flood.py ' + ' '.join(sys.argv[1:]), 'table': str(args.table),
                    'subnet_id': subnet_id, 'seconds': args.seconds, 'repeats': args.repeats,
                    'levels': args.levels, 'baseline': args.baseline or None}
    domain = free_domain_id()
    with ExitStack() as stack, tempfile.TemporaryDirectory() as folder:
        targets = [start_target(stack, 'node', args, domain, subnet_id, None)]
        if args.baseline:
            executable = baseline_executable(args.baseline, Path(folder))
            targets.append(start_target(stack, f'baseline ({args.baseline})', args, domain % 100 + 1,
                                        subnet_id, executable))
        measure(targets, args)
    report['nodes'] = {('node' if t.label == 'node' else 'baseline'): {'label': t.label, 'runs': t.runs,
                                                                        'summary': summarise(t.runs)}
                       for t in targets}
    if args.baseline:
        node, base = report['nodes']['node']['summary'], report['nodes']['baseline']['summary']
        report['node_vs_baseline_served'] = {level: round(node[level]['served_hz_median'] /
                                                          max(base[level]['served_hz_median'], 1e-9), 3)
                                             for level in node}
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--table', default=str(REPO / 'config' / 'operating_points' / 'fmnist28_ofa_mbv3.yaml'))
    parser.add_argument('--size', type=int, default=224, help='square rgb8 frame side')
    parser.add_argument('--camera-qos', choices=['sensor_data', 'reliable'], default='sensor_data',
                        help="the flooding camera's QoS: sensor_data as camera drivers offer, or reliable depth 5")
    parser.add_argument('--seconds', type=float, default=5.0, help='each flood (per level, node and repeat)')
    parser.add_argument('--unloaded-seconds', type=float, default=3.0, help='the unloaded run before each flood')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--levels', type=float, nargs='+', default=[1.0, 2.0, 5.0, 10.0])
    parser.add_argument('--baseline', default='', help='also measure the perception node of this git revision '
                        '(interleaved, on its own domain), e.g. 634eec3, the node before the flood fix')
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
    print(json.dumps({k: v['summary'] for k, v in report['nodes'].items()}, indent=1))
    print('wrote', out)


if __name__ == '__main__':
    main()
