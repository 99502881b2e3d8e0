#!/usr/bin/env python3
"""Soak: a 30 fps 640x480 camera -> perception + resource manager + platform monitor as real processes,
a target change every 20 s, for --duration seconds (600 for the committed result).

    source ws/env.sh && python bench/soak.py --duration 600

Every 10 s it records: the RSS of each node process (psutil); frames sent (this script is the camera),
received / served / dropped / rejected (the perception node's WorkloadStatus counters) and results
received; result age percentiles (receipt time minus the result's header stamp, which the node copies
from the frame); sub-network switches (changes in subnet_decision); warnings and errors in the node logs.
Writes bench/results/soak.json and soak.md: per process the RSS drift after a --warmup (60 s) warm-up
(last sample against the first after warm-up, plus the least-squares trend over the same span), and
the error count. Done when (issue 13): every drift < 1 % over 10 minutes, with 0 errors.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import rclpy
from rclpy.executors import SingleThreadedExecutor
from sensor_msgs.msg import Image

from dynofa_ros.engine.timing import percentile
from dynofa_ros.msg import InferenceResult, PerformanceTarget, SubnetDecision, WorkloadStatus
from dynofa_ros.nodes.image_conversion import array_to_image
from dynofa_ros.operating_points import load_table
from dynofa_ros.process_launch import NodeProcess, RosGraph, ros_graph

REPO = Path(__file__).resolve().parents[1]
WORKLOAD = 'soak'
LEVEL = re.compile(r'^\[(WARN|ERROR|FATAL)\]')
MAX_KEPT_MESSAGES = 8


def stamp_s(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


class Driver:
    """The camera (publishing thread) and the observer (subscriptions), in this process."""

    def __init__(self, domain_id: int, rate_hz: float, width: int, height: int) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node('soak_driver', context=self.context)
        self.images = self.node.create_publisher(Image, 'image', 10)
        self.targets = self.node.create_publisher(PerformanceTarget, 'performance_target', 10)
        self.lock = threading.Lock()
        self.ages_ms: list[float] = []          # since the last take_window()
        self.results = 0
        self.status: WorkloadStatus | None = None
        self.decision: str | None = None
        self.switches = 0
        self.sent = 0
        self.node.create_subscription(InferenceResult, 'inference_result', self._on_result, 100)
        self.node.create_subscription(WorkloadStatus, 'workload_status', self._on_status, 10)
        self.node.create_subscription(SubnetDecision, 'subnet_decision', self._on_decision, 10)
        rng = np.random.default_rng(0)
        self.frames = [array_to_image(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8), 'rgb8')
                       for _ in range(4)]
        self.period = 1.0 / rate_hz
        self.stop = threading.Event()
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.threads = [threading.Thread(target=self.executor.spin, daemon=True),
                        threading.Thread(target=self._camera, daemon=True)]
        for t in self.threads:
            t.start()

    def _on_result(self, msg: InferenceResult) -> None:
        age = (time.time() - stamp_s(msg.header.stamp)) * 1e3
        with self.lock:
            self.ages_ms.append(age)
            self.results += 1

    def _on_status(self, msg: WorkloadStatus) -> None:
        if msg.workload == WORKLOAD:
            self.status = msg

    def _on_decision(self, msg: SubnetDecision) -> None:
        if msg.workload != WORKLOAD:
            return
        if self.decision is not None and msg.subnet_id != self.decision:
            self.switches += 1
        self.decision = msg.subnet_id

    def _camera(self) -> None:
        """Paced at rate_hz; a late frame is sent at once, more than a second behind restarts the pace."""
        next_t = time.monotonic()
        while not self.stop.is_set():
            msg = self.frames[self.sent % len(self.frames)]
            msg.header.stamp = self.node.get_clock().now().to_msg()
            msg.header.frame_id = f'soak/{self.sent}'
            self.images.publish(msg)
            self.sent += 1
            next_t += self.period
            now = time.monotonic()
            if now - next_t > 1.0:
                next_t = now
            self.stop.wait(max(0.0, next_t - now))

    def take_ages(self) -> list[float]:
        with self.lock:
            ages, self.ages_ms = self.ages_ms, []
        return ages

    def close(self) -> None:
        self.stop.set()
        self.threads[1].join(2.0)
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


class LogScanner:
    """Counts WARN / ERROR / FATAL lines and tracebacks in each node's log, reading only what is new."""

    def __init__(self, nodes: list[NodeProcess]) -> None:
        self.nodes = nodes
        self.offsets = {n.name: 0 for n in nodes}
        self.counts = {n.name: {'WARN': 0, 'ERROR': 0, 'FATAL': 0, 'Traceback': 0} for n in nodes}
        self.messages: dict[str, list[str]] = {n.name: [] for n in nodes}

    def scan(self) -> None:
        for n in self.nodes:
            with open(n.log_path, 'rb') as f:
                f.seek(self.offsets[n.name])
                chunk = f.read()
            cut = chunk.rfind(b'\n') + 1          # only whole lines; the rest is read next time
            self.offsets[n.name] += cut
            for line in chunk[:cut].decode(errors='replace').splitlines():
                m = LEVEL.match(line)
                kind = m.group(1) if m else 'Traceback' if line.startswith('Traceback') else None
                if kind is None:
                    continue
                self.counts[n.name][kind] += 1
                text = re.sub(r'^\[\w+\] \[[\d.]+\] ', '', line)[:200]
                if len(self.messages[n.name]) < MAX_KEPT_MESSAGES and text not in self.messages[n.name]:
                    self.messages[n.name].append(text)

    def errors(self) -> int:
        return sum(c['ERROR'] + c['FATAL'] + c['Traceback'] for c in self.counts.values())

    def warnings(self) -> int:
        return sum(c['WARN'] for c in self.counts.values())


def age_summary(ages: list[float]) -> dict:
    if not ages:
        return {'n': 0}
    return {'n': len(ages), 'p50': round(percentile(ages, 50), 2), 'p95': round(percentile(ages, 95), 2),
            'p99': round(percentile(ages, 99), 2), 'max': round(max(ages), 2)}


def rss_mb(nodes: list[NodeProcess]) -> dict[str, float]:
    out = {}
    for n in nodes:
        try:
            out[n.name] = round(psutil.Process(n.process.pid).memory_info().rss / 2**20, 2)
        except psutil.Error:
            out[n.name] = float('nan')   # the process is gone: shows as a failed soak
    return out


def sample(t: float, driver: Driver, nodes: list[NodeProcess], logs: LogScanner, ages: list[float]) -> dict:
    logs.scan()
    s = driver.status
    counters = {k: int(getattr(s, k)) for k in ('frames_received', 'frames_processed', 'frames_dropped',
                                                'frames_rejected')} if s else {}
    return {'t_s': round(t, 1), 'rss_mb': rss_mb(nodes), 'frames_sent': driver.sent, 'results_received':
            driver.results, **counters, 'active_subnet': s.active_subnet_id if s else None,
            'result_age_ms': age_summary(ages), 'switches': driver.switches,
            'warnings': logs.warnings(), 'errors': logs.errors(),
            'alive': {n.name: n.running() for n in nodes}}


def drift(samples: list[dict], name: str, warmup_s: float) -> dict:
    """RSS after the warm-up: last vs first sample, the least-squares trend over that span, and the peak."""
    pts = [(x['t_s'], x['rss_mb'][name]) for x in samples if x['t_s'] >= warmup_s]
    if len(pts) < 2:
        return {'n': len(pts)}
    t, rss = np.array(pts).T
    slope = np.polyfit(t, rss, 1)[0]
    first = rss[0]
    return {'n': len(pts), 'span_s': round(float(t[-1] - t[0]), 1), 'rss_first_mb': round(float(first), 2),
            'rss_last_mb': round(float(rss[-1]), 2), 'drift_pct': round(float(100 * (rss[-1] - first) / first), 3),
            'trend_pct': round(float(100 * slope * (t[-1] - t[0]) / first), 3),
            'peak_pct': round(float(100 * (rss.max() - first) / first), 3)}


def targets_cycle(table) -> list[tuple[str, float]]:
    fastest = table.by_latency('cpu', 'p95')[0].latency('cpu', 'p95')
    accurate = max(table.points, key=lambda p: p.accuracy).latency('cpu', 'p95')
    return [('none', 0.0), ('tight', round(fastest * 1.5, 2)), ('relaxed', round(accurate * 1.3, 2)),
            ('middle', round((fastest + accurate) / 2, 2))]


def start_nodes(graph: RosGraph, table_path: str, status_rate_hz: float) -> list[NodeProcess]:
    return [graph.start('perception_node', parameters={'workload': WORKLOAD, 'operating_points': table_path,
                                                       'threads': 1, 'status_rate_hz': status_rate_hz,
                                                       'qos_reliability': 'reliable'}),   # large best-effort frames get lost in Fast DDS
            graph.start('resource_manager_node', parameters={'operating_points': table_path,
                                                             'workloads': [WORKLOAD]}),
            graph.start('platform_monitor_node', parameters={'rate_hz': 2.0})]


def run(args: argparse.Namespace) -> dict:
    table = load_table(args.table)
    cycle = targets_cycle(table)
    with ros_graph(domain_id=args.domain) as graph:
        nodes = start_nodes(graph, args.table, 2.0)
        driver = Driver(graph.domain_id, args.rate, args.width, args.height)
        logs = LogScanner(nodes)
        samples, all_ages, changes = [], [], []
        try:
            deadline = time.monotonic() + 120
            while driver.status is None or not driver.status.frames_processed:
                if time.monotonic() > deadline:
                    raise SystemExit('no result from the perception node in 120 s:\n' + graph.dump_logs())
                time.sleep(0.2)
            start = time.monotonic()
            next_sample, next_target, i = start + args.interval, start, 0
            while (now := time.monotonic()) - start < args.duration:
                if now >= next_target:
                    label, ms = cycle[i % len(cycle)]
                    driver.targets.publish(PerformanceTarget(workload=WORKLOAD, max_latency_ms=ms))
                    changes.append({'t_s': round(now - start, 1), 'target': label, 'max_latency_ms': ms})
                    i, next_target = i + 1, next_target + args.target_period
                if now >= next_sample:
                    ages = driver.take_ages()
                    all_ages += ages
                    samples.append(sample(now - start, driver, nodes, logs, ages))
                    print(json.dumps(samples[-1]), flush=True)
                    next_sample += args.interval
                time.sleep(0.05)
        finally:
            driver.close()
            codes = graph.stop_all()
        logs.scan()
    return {'samples': samples, 'target_changes': changes, 'ages': all_ages, 'exit_codes': codes, 'logs': logs}


def commit() -> str:
    """The checkout's commit, '+dirty' when files differ from it (others may be editing the tree)."""
    def git(*a: str) -> str:
        return subprocess.run(['git', '-C', str(REPO), *a], capture_output=True, text=True).stdout.strip()
    return git('rev-parse', '--short', 'HEAD') + ('+dirty' if git('status', '--porcelain', '-uno') else '')


def report(args: argparse.Namespace, out: dict) -> dict:
    samples, logs = out['samples'], out['logs']
    last, names = samples[-1], list(samples[-1]['rss_mb'])
    sent, served = last['frames_sent'] - samples[0]['frames_sent'], \
        last.get('frames_processed', 0) - samples[0].get('frames_processed', 0)
    span = last['t_s'] - samples[0]['t_s']
    return {
        'config': {'duration_s': args.duration, 'warmup_s': args.warmup, 'interval_s': args.interval,
                   'target_period_s': args.target_period, 'camera': f'{args.width}x{args.height} rgb8 '
                   f'@ {args.rate:g} fps', 'table': os.path.relpath(args.table, REPO),
                   'domain_id': args.domain, 'commit': commit(),
                   'machine': {'cpu_count': os.cpu_count(), 'processor': platform.processor() or platform.machine(),
                               'note': 'shared machine: other work ran during the soak'}},
        'rss': {n: drift(samples, n, args.warmup) for n in names},
        'frames': {k: last.get(k) for k in ('frames_sent', 'results_received', 'frames_received',
                                            'frames_processed', 'frames_dropped', 'frames_rejected')},
        'served_fps': round(served / span, 2) if span > 0 else None,
        'sent_fps': round(sent / span, 2) if span > 0 else None,
        'served_over_sent': round(served / sent, 3) if sent else None,
        'result_age_ms': age_summary(out['ages']),
        'switches': last['switches'], 'switches_per_min': round(60 * last['switches'] / max(1.0, last['t_s']), 2),
        'target_changes': len(out['target_changes']),
        'warnings': logs.warnings(), 'errors': logs.errors(), 'log_counts': logs.counts,
        'log_messages': logs.messages, 'exit_codes': out['exit_codes'],
        'all_alive': all(all(s['alive'].values()) for s in samples),
        'samples': samples, 'target_schedule': out['target_changes'],
    }


def markdown(r: dict) -> str:
    c = r['config']
    worst = max((d.get('drift_pct', float('nan')) for d in r['rss'].values()), key=abs)
    ok = abs(worst) < 1.0 and r['errors'] == 0 and r['all_alive']
    lines = [f"# Soak: {c['duration_s']:g} s, camera {c['camera']}, a target change every {c['target_period_s']:g} s",
             '', '`source ws/env.sh && python bench/soak.py --duration ' f"{c['duration_s']:g}`"
             f" (commit {c['commit']}, {c['machine']['cpu_count']} CPUs, {c['machine']['processor']}; "
             f"{c['machine']['note']}).", '',
             f"Done when (issue 13): RSS drift < 1 % per process after a {c['warmup_s']:g} s warm-up, 0 errors: "
             f"**{'met' if ok else 'NOT met'}** (worst drift {worst:+.3f} %, {r['errors']} errors, "
             f"{r['warnings']} warnings, every process alive: {r['all_alive']}).", '',
             '| process | RSS after warm-up MiB | RSS at end MiB | drift % | trend % | peak % |',
             '|---|---:|---:|---:|---:|---:|']
    for name, d in r['rss'].items():
        lines.append(f"| {name} | {d.get('rss_first_mb')} | {d.get('rss_last_mb')} | {d.get('drift_pct')} | "
                     f"{d.get('trend_pct')} | {d.get('peak_pct')} |")
    f, a = r['frames'], r['result_age_ms']
    lines += ['', 'drift: last sample against the first after warm-up; trend: least-squares slope over the same '
              'span, as % of the first; peak: the highest sample.', '',
              f"Frames: sent {f['frames_sent']}, received by the node {f['frames_received']}, served "
              f"{f['frames_processed']}, dropped (keep-latest) {f['frames_dropped']}, rejected "
              f"{f['frames_rejected']}; results received here {f['results_received']}. Served "
              f"{r['served_fps']} fps of {r['sent_fps']} sent (ratio {r['served_over_sent']}).", '',
              f"Result age (receipt minus header stamp) over {a.get('n')} results: p50 {a.get('p50')} ms, "
              f"p95 {a.get('p95')} ms, p99 {a.get('p99')} ms, max {a.get('max')} ms.", '',
              f"Switches: {r['switches']} ({r['switches_per_min']} per minute) for {r['target_changes']} target "
              f"changes. Exit codes: {r['exit_codes']}.", '', '| process | WARN | ERROR | FATAL | Traceback |',
              '|---|---:|---:|---:|---:|']
    for name, k in r['log_counts'].items():
        lines.append(f"| {name} | {k['WARN']} | {k['ERROR']} | {k['FATAL']} | {k['Traceback']} |")
    for name, msgs in r['log_messages'].items():
        lines += [f'- {name}: `{m}`' for m in msgs]
    return '\n'.join(lines) + '\n'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--duration', type=float, default=600.0)
    parser.add_argument('--warmup', type=float, default=60.0)
    parser.add_argument('--interval', type=float, default=10.0)
    parser.add_argument('--target-period', type=float, default=20.0)
    parser.add_argument('--rate', type=float, default=30.0)
    parser.add_argument('--width', type=int, default=640)
    parser.add_argument('--height', type=int, default=480)
    parser.add_argument('--table', default=str(REPO / 'config' / 'operating_points' / 'fmnist28_ofa_mbv3.yaml'))
    parser.add_argument('--out', default=str(REPO / 'bench' / 'results' / 'soak'), help='path without suffix')
    parser.add_argument('--domain', type=int, default=101 + os.getpid() % 100,
                        help='ROS domain id; default 101..200, away from the 1..100 that tests pick, so a test '
                             'run on the same machine does not join this graph')
    args = parser.parse_args()
    r = report(args, run(args))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out + '.json').write_text(json.dumps(r, indent=1) + '\n')
    Path(args.out + '.md').write_text(markdown(r))
    print(markdown(r))


if __name__ == '__main__':
    main()
