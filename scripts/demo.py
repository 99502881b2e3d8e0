#!/usr/bin/env python3
"""The dynofa_ros demo: a camera, the perception node, the resource manager and the platform monitor as
separate processes.

A scripted scenario retargets the workload (tighter latency bound, then relaxed) and starts a REAL
co-running load (a busy process per core, dynofa_ros/platform/corunner.py) that the platform monitor
measures and the workload competes with for the cores. Every second the demo prints the active
sub-network, its latency, the accuracy measured against the camera's ground-truth labels and the CPU load
the monitor reports, then a summary of every switch and how fast it took effect.
Run through scripts/demo.sh, which sets the environment up first.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import rclpy

from dynofa_ros.msg import InferenceResult, PerformanceTarget, PlatformLoad, WorkloadStatus
from dynofa_ros.operating_points import OperatingPointTable, load_table
from dynofa_ros.platform.corunner import CoRunner
from dynofa_ros.process_launch import RosGraph, ros_graph

REPO = Path(__file__).resolve().parents[1]
WORKLOAD = 'front_camera'


def scenario(fastest_ms: float, accurate_ms: float, duration: float) -> list[tuple[float, str, dict]]:
    """(time s, description, action) steps scaled to the run's duration."""
    d = duration
    return [
        (0.0, 'no target: most accurate point', {'target': 0.0}),
        (0.25 * d, f'retarget: max latency {fastest_ms * 1.05:.2f} ms', {'target': fastest_ms * 1.05}),
        (0.45 * d, f'relax: max latency {accurate_ms * 1.3:.2f} ms', {'target': accurate_ms * 1.3}),
        (0.65 * d, f'co-running load starts: {os.cpu_count()} busy process(es), real', {'load': True}),
        (0.85 * d, 'co-running load stops', {'load': False}),
    ]


class DemoObserver:
    """The demo's own rclpy node: results (accuracy per sub-network), status (switches), platform load."""

    def __init__(self, domain_id: int) -> None:
        rclpy.init(domain_id=domain_id)
        self.node = rclpy.create_node('dynofa_demo')
        self.statuses: list[WorkloadStatus] = []
        self.correct: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        self.switches: list[tuple[float, str]] = []
        self.cpu_percent = math.nan
        self.node.create_subscription(InferenceResult, 'inference_result', self._on_result, 50)
        self.node.create_subscription(WorkloadStatus, 'workload_status', self._on_status, 10)
        self.node.create_subscription(PlatformLoad, 'platform_load', self._on_load, 10)
        self.targets = self.node.create_publisher(PerformanceTarget, 'performance_target', 10)

    def _on_result(self, msg: InferenceResult) -> None:
        truth = int(msg.header.frame_id.rsplit(':', 1)[1])
        tally = self.correct[msg.subnet_id]
        tally[0] += int(msg.class_ids[0] == truth)
        tally[1] += 1

    def _on_status(self, msg: WorkloadStatus) -> None:
        if self.statuses and self.statuses[-1].active_subnet_id != msg.active_subnet_id:
            self.switches.append((time.monotonic(), msg.active_subnet_id))
        self.statuses.append(msg)

    def _on_load(self, msg: PlatformLoad) -> None:
        if msg.cpu_percent:
            self.cpu_percent = sum(msg.cpu_percent) / len(msg.cpu_percent)

    def spin_until(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not predicate() and time.monotonic() < deadline:
            rclpy.spin_once(self.node, timeout_sec=0.1)
        return bool(predicate())

    def close(self) -> None:
        self.node.destroy_node()
        rclpy.shutdown()


def print_table(table: OperatingPointTable, path: str, width: int) -> None:
    print(f'operating points ({path}):')
    dev = table.device_for('cpu')
    for point in table.by_latency(dev, 'p95'):
        print(f'  {point.id:<{width}} top-1 {point.accuracy:.3f}  p95 {point.latency(dev, "p95"):6.2f} ms  '
              f'{point.memory_mb:5.2f} MiB')


def run_scenario(obs: DemoObserver, steps: list, duration: float, corunner: CoRunner, width: int) -> tuple:
    """Play the steps, one status line a second; returns (start time, [(time, event)])."""
    events: list[tuple[float, str]] = []
    start = time.monotonic()
    next_print, co_cpu = start, 0.0
    print(f'\n{"t s":>5}  {"active sub-network":<{width}} {"p95 ms":>7} {"top-1":>6} {"done":>6} {"drop":>5} '
          f'{"cpu %":>6} {"co-run":>7}')
    while (now := time.monotonic()) - start < duration:
        while steps and now - start >= steps[0][0]:
            _, text, action = steps.pop(0)
            events.append((now, text))
            print(f'{now - start:5.1f}  >>> {text}')
            if 'target' in action:
                obs.targets.publish(PerformanceTarget(workload=WORKLOAD, max_latency_ms=action['target']))
            if action.get('load') is True:
                corunner.start()
            elif action.get('load') is False:
                corunner.stop()
        if now >= next_print:
            used = corunner.cpu_seconds()   # co-runner CPU-seconds in the last second, as % of one core
            co_share, co_cpu = max(0.0, used - co_cpu), used
            s = obs.statuses[-1]
            hits, total = obs.correct[s.active_subnet_id]
            acc = f'{hits / total:.3f}' if total else '  -  '
            print(f'{now - start:5.1f}  {s.active_subnet_id:<{width}} {s.latency_p95_ms:7.2f} {acc:>6} '
                  f'{s.frames_processed:6d} {s.frames_dropped:5d} {obs.cpu_percent:6.1f} '
                  f'{100 * co_share:6.0f}%')
            next_print += 1.0
        rclpy.spin_once(obs.node, timeout_sec=0.05)
    return start, events


def print_summary(obs: DemoObserver, table: OperatingPointTable, start: float, events: list, width: int) -> None:
    print('\nswitches (time after the scenario event that caused them):')
    for t_switch, subnet in obs.switches:
        cause = max((e for e in events if e[0] <= t_switch), default=(start, 'start'))
        print(f'  {t_switch - start:5.1f} s  -> {subnet:<{width}} {1e3 * (t_switch - cause[0]):6.0f} ms after '
              f'"{cause[1]}"')
    print('\nmeasured top-1 per sub-network (ground truth from the camera):')
    for subnet, (hits, total) in sorted(obs.correct.items()):
        recorded = table.point(subnet).accuracy if subnet in table.ids() else float('nan')
        print(f'  {subnet:<{width}} {hits / total:.3f} over {total:4d} frames (table: {recorded:.3f})')


def start_nodes(graph: RosGraph, table_path: str) -> None:
    graph.start('synthetic_camera', parameters={'rate_hz': 30.0, 'size': 224, 'count': 500,
                                                'label_in_frame_id': True})
    graph.start('perception_node', parameters={'workload': WORKLOAD, 'operating_points': table_path,
                                               'threads': 1, 'status_rate_hz': 5.0})
    graph.start('resource_manager_node', parameters={'operating_points': table_path, 'workloads': [WORKLOAD]})
    graph.start('platform_monitor_node', parameters={'rate_hz': 2.0})   # this machine's real load


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--duration', type=float, default=40.0, help='scenario length in seconds')
    parser.add_argument('--table', default=str(REPO / 'config' / 'operating_points' / 'fmnist28_ofa_mbv3.yaml'))
    parser.add_argument('--corunner-cap', type=float, default=None,
                        help='confine the co-running load to this share of its CPUs (cgroup CFS quota, the '
                             'emulated-DVFS path); default: unconfined')
    args = parser.parse_args()
    table = load_table(args.table)
    dev = table.device_for('cpu')
    fastest = table.by_latency(dev, 'p95')[0]  # the manager judges targets on p95 latency
    accurate = max(table.points, key=lambda p: p.accuracy)
    width = max(len(point.id) for point in table.points)
    print_table(table, args.table, width)
    with ros_graph() as graph:
        start_nodes(graph, args.table)
        corunner = CoRunner(workers=os.cpu_count() or 1, duty=1.0, duration_s=args.duration,
                            cap=args.corunner_cap, log_path=graph.log_dir / 'corunner.log')
        obs = DemoObserver(graph.domain_id)
        try:
            print('\nwaiting for the first result ...')
            if not obs.spin_until(lambda: any(s.frames_processed for s in obs.statuses), 120):
                print('no result from the perception node; logs:\n' + graph.dump_logs())
                return 1
            steps = scenario(fastest.latency(dev, 'p95'), accurate.latency(dev, 'p95'), args.duration)
            start, events = run_scenario(obs, steps, args.duration, corunner, width)
            print_summary(obs, table, start, events, width)
        finally:
            corunner.stop()
            obs.close()
    return 0


if __name__ == '__main__':
    sys.exit(main())
