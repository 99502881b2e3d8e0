#!/usr/bin/env python3
"""The dynofa_ros demo: a camera, the perception node and the resource manager as separate processes.

A scripted scenario retargets the workload (tighter latency bound, then relaxed) and injects a CPU load
spike; every second the demo prints the active sub-network, its latency and the accuracy measured
against the camera's ground-truth labels, then a summary of every switch and how fast it took effect.
Run through scripts/demo.sh, which sets the environment up first.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import rclpy

from dynofa_ros.msg import InferenceResult, PerformanceTarget, PlatformLoad, WorkloadStatus
from dynofa_ros.operating_points import load_table
from dynofa_ros.process_launch import ros_graph

REPO = Path(__file__).resolve().parents[1]
WORKLOAD = 'front_camera'


def scenario(fastest_ms: float, accurate_ms: float, duration: float) -> list[tuple[float, str, dict]]:
    """(time s, description, action) steps scaled to the run's duration."""
    d = duration
    return [
        (0.0, 'no target: most accurate point', {'target': 0.0}),
        (0.25 * d, f'retarget: max latency {fastest_ms * 1.05:.2f} ms', {'target': fastest_ms * 1.05}),
        (0.45 * d, f'relax: max latency {accurate_ms * 1.3:.2f} ms', {'target': accurate_ms * 1.3}),
        (0.65 * d, 'co-running load spike: CPU 100%', {'load': 100.0}),
        (0.85 * d, 'load gone', {'load': 0.0}),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--duration', type=float, default=40.0, help='scenario length in seconds')
    parser.add_argument('--table', default=str(REPO / 'config' / 'operating_points' / 'fmnist_ofa_mbv3.yaml'))
    args = parser.parse_args()
    table = load_table(args.table)
    fastest = table.by_latency('cpu', 'p95')[0]  # the manager judges targets on p95 latency
    accurate = max(table.points, key=lambda p: p.accuracy)
    width = max(len(point.id) for point in table.points)
    print(f'operating points ({args.table}):')
    for point in table.by_latency('cpu', 'p95'):
        print(f'  {point.id:<{width}} top-1 {point.accuracy:.3f}  p95 {point.latency("cpu", "p95"):6.2f} ms  '
              f'{point.memory_mb:5.2f} MiB')

    with ros_graph() as graph:
        graph.start('synthetic_camera', parameters={'rate_hz': 30.0, 'size': 224, 'count': 500,
                                                    'label_in_frame_id': True})
        graph.start('perception_node', parameters={'workload': WORKLOAD, 'operating_points': args.table,
                                                   'threads': 1, 'status_rate_hz': 5.0})
        graph.start('resource_manager_node', parameters={'operating_points': args.table,
                                                         'workloads': [WORKLOAD]})
        rclpy.init(domain_id=graph.domain_id)
        node = rclpy.create_node('dynofa_demo')
        statuses: list[WorkloadStatus] = []
        correct: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        switches: list[tuple[float, str]] = []

        def on_result(msg: InferenceResult) -> None:
            truth = int(msg.header.frame_id.rsplit(':', 1)[1])
            tally = correct[msg.subnet_id]
            tally[0] += int(msg.class_ids[0] == truth)
            tally[1] += 1

        def on_status(msg: WorkloadStatus) -> None:
            if statuses and statuses[-1].active_subnet_id != msg.active_subnet_id:
                switches.append((time.monotonic(), msg.active_subnet_id))
            statuses.append(msg)

        node.create_subscription(InferenceResult, 'inference_result', on_result, 50)
        node.create_subscription(WorkloadStatus, 'workload_status', on_status, 10)
        target_pub = node.create_publisher(PerformanceTarget, 'performance_target', 10)
        load_pub = node.create_publisher(PlatformLoad, 'platform_load', 10)

        print('\nwaiting for the first result ...')
        deadline = time.monotonic() + 120
        while not any(s.frames_processed for s in statuses) and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
        if not statuses:
            print('no status from the perception node; logs:\n' + graph.dump_logs())
            return 1

        steps = scenario(fastest.latency('cpu', 'p95'), accurate.latency('cpu', 'p95'), args.duration)
        events: list[tuple[float, str]] = []
        load = 0.0
        start = time.monotonic()
        next_print = start
        print(f'\n{"t s":>5}  {"active sub-network":<{width}} {"p95 ms":>7} {"top-1":>6} {"done":>6} {"drop":>5}')
        while (now := time.monotonic()) - start < args.duration:
            while steps and now - start >= steps[0][0]:
                _, text, action = steps.pop(0)
                events.append((now, text))
                print(f'{now - start:5.1f}  >>> {text}')
                if 'target' in action:
                    target_pub.publish(PerformanceTarget(workload=WORKLOAD, max_latency_ms=action['target']))
                if 'load' in action:
                    load = action['load']
            if now >= next_print:
                load_pub.publish(PlatformLoad(cpu_percent=[load] * 2, gpu_percent=float('nan'),
                                              modelled=True))
                if statuses:
                    s = statuses[-1]
                    hits, total = correct[s.active_subnet_id]
                    acc = f'{hits / total:.3f}' if total else '  -  '
                    print(f'{now - start:5.1f}  {s.active_subnet_id:<{width}} {s.latency_p95_ms:7.2f} {acc:>6} '
                          f'{s.frames_processed:6d} {s.frames_dropped:5d}')
                next_print += 1.0
            rclpy.spin_once(node, timeout_sec=0.05)

        print('\nswitches (time after the scenario event that caused them):')
        for t_switch, subnet in switches:
            cause = max((e for e in events if e[0] <= t_switch), default=(start, 'start'))
            print(f'  {t_switch - start:5.1f} s  -> {subnet:<{width}} {1e3 * (t_switch - cause[0]):6.0f} ms after '
                  f'"{cause[1]}"')
        print('\nmeasured top-1 per sub-network (ground truth from the camera):')
        for subnet, (hits, total) in sorted(correct.items()):
            recorded = table.point(subnet).accuracy if subnet in table.ids() else float('nan')
            print(f'  {subnet:<{width}} {hits / total:.3f} over {total:4d} frames (table: {recorded:.3f})')
        node.destroy_node()
        rclpy.shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
