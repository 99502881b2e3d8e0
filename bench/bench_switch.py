#!/usr/bin/env python3
"""Switching benchmark: SubnetDecision published -> first InferenceResult from the new point, through ROS.

    source ws/env.sh && python bench/bench_switch.py [--rounds 30] [--camera-hz 50]

Starts the installed perception node as a real process (private domain, reliable QoS depth 10, 1 torch
thread, diagnostics at 10 Hz) on a copy of the table (`--table`, default the shipped default) with one
graph variant of the target sub-network P (`P@frozen`: the table's row, else its eager row made into
one; `P@fused` where the schema lacks frozen). This process is the camera
(a fixed-rate reliable publisher), the resource manager (it publishes the decisions) and the observer.
Each measurement starts from a neutral eager point N, then switches to one of three kinds of target:

- shared: P itself (eager: a shared-weight form, always resident);
- resident_private: P@variant, named in `materialised` beforehand and built (resident);
- non_resident_private: P@variant, not resident: the node serves P's shared form at once and builds the
  private form in its background thread; both times are recorded (first result of P in any form, and
  first result of the private form).

The kinds are interleaved, each once in every round (a fixed cycle, or `--order shuffle`), so drift
affects them equally. Right after each decision a short burst of extra frames (`--kick-hz` for
`--kick-ms`) is published, so the time to the first result is not bounded by the camera period; the time
to the result of the first frame *published after* the decision, and how long after the decision the
first new-point frame was published, are recorded too. The alternative, a reload of the same point from
the checkpoint, is measured in this process in every round with the camera paused: `SubnetPool.from_table`
on a one-point table (every round), and `load_supernet` + `extract` + BN load + the variant build (every
`--extract-every` rounds), each followed by one forward pass. Frames whose inference raised in the node
during a switch are counted from /diagnostics. Writes bench/results/switching.json and .md.
"""
from __future__ import annotations

import argparse
import bisect
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / 'config' / 'operating_points' / 'fmnist28_ofa_mbv3.yaml'  # the default table
WORKLOAD = 'bench_switch'
KINDS = ('shared', 'resident_private', 'non_resident_private')
# the order in every round: the private form the non-resident switch built is then still resident for the
# resident switch (its prepare keeps it rather than rebuilding it, ~2 s), and each kind recurs every round
CYCLE = ('non_resident_private', 'resident_private', 'shared')
FRAME_SIZE = 64  # px, rgb8: small, so DDS transport is not what is measured
WAIT_S = 20.0  # longest wait for any one expected result


# ---- tables -------------------------------------------------------------------------------------------

def table_rows(src: Path = SHIPPED) -> dict[str, Any]:
    """The table as YAML data with absolute checkpoint and BN paths (adapted from
    test/test_perception_materialise.py's `_table_with_variants`)."""
    from dynofa_ros.operating_points import (load_table, resolve_bn_stats, resolve_calibration_images,
                                             resolve_checkpoint)
    table = load_table(src)
    data = yaml.safe_load(src.read_text())
    data['supernet']['checkpoint'] = str(resolve_checkpoint(src, table))
    if data['supernet'].get('calibration_images'):
        data['supernet']['calibration_images'] = str(resolve_calibration_images(src, table))
    for row, point in zip(data['points'], table.points):
        row['bn_stats'] = str(resolve_bn_stats(src, point)) if point.bn_stats else None
    return data


def write_table(data: dict[str, Any], rows: list[dict[str, Any]], path: Path) -> Path:
    """`data` with its points replaced by `rows`, written to `path`."""
    path.write_text(yaml.safe_dump({**data, 'points': rows}, sort_keys=False))
    return path


def variant_row(data: dict[str, Any], subnet_id: str, variant: str) -> dict[str, Any]:
    """The table's `<id>@<variant>` row, else the eager row of `subnet_id` made into one."""
    key = f'{subnet_id}@{variant}'
    own = next((r for r in data['points'] if r['id'] == key), None)
    row = next(r for r in data['points'] if r['id'] == subnet_id)
    return own or dict(row, id=key, graph_variant=variant)


def eager_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The table's eager points (the node's table: these plus the one private point measured)."""
    return [r for r in data['points'] if r.get('graph_variant', 'eager') == 'eager']


def default_variant() -> str:
    """frozen where the table schema knows it, else fused."""
    from dynofa_ros.operating_points import GRAPH_VARIANTS
    return 'frozen' if 'frozen' in GRAPH_VARIANTS else 'fused'


# ---- the ROS side: camera, decisions, observation ---------------------------------------------------------

@dataclass(frozen=True)
class Result:
    received: float  # monotonic, this process
    seq: int  # the frame's sequence number (from its frame_id)
    subnet_id: str  # the form that produced it
    inference_ms: float  # the model's forward pass, as the node reports it
    node_latency_ms: float  # the node's time from the frame's arrival to the result's publication


class Bench:
    """An rclpy node in this process: camera thread, decision publisher, result and diagnostics log."""

    def __init__(self, domain_id: int, camera_hz: float) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image

        from dynofa_ros.msg import InferenceResult, SubnetDecision
        from dynofa_ros.nodes.image_conversion import array_to_image
        from dynofa_ros.nodes.qos import latched_qos
        self.to_image = array_to_image
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node('bench_switch', context=self.context)
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.images = self.node.create_publisher(Image, 'image', reliable)
        # latched like the resource manager's: the node's decision subscription is transient_local
        self.decisions = self.node.create_publisher(SubnetDecision, 'subnet_decision', latched_qos())
        self.node.create_subscription(InferenceResult, 'inference_result', self._on_result, 100)
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics, 10)
        self.lock = threading.Lock()
        self.frames: dict[int, float] = {}  # seq -> publication time (monotonic)
        self.results: list[Result] = []
        self.diagnostics: list[tuple[float, dict[str, str]]] = []
        self.pixels = np.random.default_rng(0).integers(0, 256, (FRAME_SIZE, FRAME_SIZE, 3), dtype=np.uint8)
        self.seq = 0
        self.paused = threading.Event()
        self.stopped = threading.Event()
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.threads = [threading.Thread(target=self.executor.spin, daemon=True),
                        threading.Thread(target=self._camera, args=(camera_hz,), daemon=True)]
        for thread in self.threads:
            thread.start()

    def _on_result(self, msg: Any) -> None:
        now = time.monotonic()
        seq = int(msg.header.frame_id.rsplit('/', 1)[-1])
        with self.lock:
            self.results.append(Result(now, seq, msg.subnet_id, msg.inference_ms, msg.node_latency_ms))

    def _on_diagnostics(self, msg: Any) -> None:
        now = time.monotonic()
        for status in msg.status:
            if WORKLOAD in status.name:
                with self.lock:
                    self.diagnostics.append((now, {kv.key: kv.value for kv in status.values}))

    def _camera(self, rate_hz: float) -> None:
        """Publish a frame every 1/rate_hz s on an absolute schedule (no drift), unless paused."""
        period, due = 1.0 / rate_hz, time.monotonic()
        while not self.stopped.is_set():
            due += period
            if not self.paused.is_set():
                self.publish_frame()
            time.sleep(max(0.0, due - time.monotonic()))

    def publish_frame(self) -> int:
        """Publish the next frame (camera or burst); returns its sequence number."""
        with self.lock:
            self.seq += 1
            seq = self.seq
        msg = self.to_image(self.pixels, 'rgb8')
        msg.header.stamp = self.node.get_clock().now().to_msg()
        msg.header.frame_id = f'sw/{seq}'
        with self.lock:
            self.frames[seq] = time.monotonic()
        self.images.publish(msg)
        return seq

    def decide(self, subnet_id: str, materialised: list[str], reason: str) -> float:
        """Publish a SubnetDecision for the node's workload; returns when (monotonic)."""
        from dynofa_ros.msg import SubnetDecision
        msg = SubnetDecision(workload=WORKLOAD, subnet_id=subnet_id, materialised=materialised, reason=reason)
        t = time.monotonic()
        self.decisions.publish(msg)
        return t

    def results_since(self, t: float) -> list[Result]:
        """Results received at or after `t` (the log is in receipt order: a bisection, then a copy)."""
        with self.lock:
            return self.results[bisect.bisect_left(self.results, t, key=lambda r: r.received):]

    def frame_time(self, seq: int) -> float:
        with self.lock:
            return self.frames[seq]

    def diagnostics_since(self, t: float) -> list[dict[str, str]]:
        with self.lock:
            start = bisect.bisect_left(self.diagnostics, t, key=lambda d: d[0])
            return [values for _, values in self.diagnostics[start:]]

    def errors_since(self, t: float) -> int | None:
        """The node's `errors` count (inference failures) in the last diagnostics received after `t`."""
        values = self.diagnostics_since(t)
        return int(values[-1].get('errors', 0)) if values else None

    def last_diagnostics(self) -> dict[str, str]:
        with self.lock:
            return dict(self.diagnostics[-1][1]) if self.diagnostics else {}

    def close(self) -> None:
        self.stopped.set()
        self.executor.shutdown()
        self.threads[1].join(1.0)
        self.node.destroy_node()
        self.context.try_shutdown()


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Poll `predicate` every 5 ms until true; TimeoutError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f'timed out after {timeout:.0f} s waiting for {what}')
        time.sleep(0.005)


def resident_set(values: dict[str, str]) -> set[str]:
    """The private forms a /diagnostics entry reports resident."""
    return set(values.get('resident_private_forms', '').split(',')) - {''}


# ---- one measurement ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Points:
    neutral: str  # N: the eager point every measurement starts from
    target: str  # P: the sub-network switched to
    private: str  # P@variant

    def plan(self, kind: str) -> tuple[str, list[str], set[str], str]:
        """(decision subnet_id, materialised list, expected resident private forms, form awaited)."""
        if kind == 'shared':
            return self.target, [self.neutral], set(), self.target
        if kind == 'resident_private':
            return self.private, [self.private], {self.private}, self.private
        return self.private, [self.neutral], set(), self.private  # [N]: no private form resident


def prepare(bench: Bench, points: Points, kind: str, settle_s: float) -> None:
    """Serve N with exactly the kind's resident set. Sent twice: the first decision cannot drop the
    private form still requested (the previous target); the second, for the same point, only applies
    `materialised`."""
    _, materialised, expected, _ = points.plan(kind)
    t = bench.decide(points.neutral, materialised, 'bench: back to the neutral point')
    wait_for(lambda: any(r.subnet_id == points.neutral for r in bench.results_since(t)), WAIT_S, 'N serving')
    t = bench.decide(points.neutral, materialised, 'bench: resident set')
    wait_for(lambda: any(d.get('requested_subnet_id') == points.neutral and resident_set(d) == expected
                         for d in bench.diagnostics_since(t)), WAIT_S, f'resident set {expected}')
    time.sleep(settle_s)  # steady serving of N at the camera rate


def switch_once(bench: Bench, points: Points, kind: str, kick_hz: float, kick_s: float) -> dict[str, Any]:
    """Publish the decision (and a burst of frames); wait for the awaited form; the sample."""
    subnet_id, materialised, _, awaited = points.plan(kind)
    errors_before = bench.errors_since(0.0)
    t_d = bench.decide(subnet_id, materialised, f'bench: {kind}')
    next_kick, deadline = t_d, t_d + WAIT_S
    while not any(r.subnet_id == awaited for r in bench.results_since(t_d)):
        now = time.monotonic()
        if now > deadline:
            return {'timeout': True}
        if kick_hz > 0 and now >= next_kick and now < t_d + kick_s:
            bench.publish_frame()
            next_kick += 1.0 / kick_hz
        time.sleep(0.001)  # receipt times come from the subscription callback, not from this loop
    t_done = time.monotonic()
    wait_for(lambda: bench.errors_since(t_done + 0.12) is not None, WAIT_S, 'diagnostics after the switch')
    errors = bench.errors_since(t_done + 0.12) - (errors_before or 0)  # frames whose inference raised
    return {**sample(bench, t_d, {points.target, points.private}, awaited), 'inference_errors': errors}


def sample(bench: Bench, t_d: float, new_forms: set[str], awaited: str) -> dict[str, Any]:
    """Times (ms from the decision) of the first results of the new sub-network and of the awaited form."""
    results = bench.results_since(t_d)
    ms = lambda t: round((t - t_d) * 1e3, 3)  # noqa: E731
    first_new = next(r for r in results if r.subnet_id in new_forms)
    first_awaited = next(r for r in results if r.subnet_id == awaited)
    after = [r for r in results if bench.frame_time(r.seq) >= t_d]
    first_post = next((r for r in after if r.subnet_id in new_forms), None)
    return {'to_first_result_ms': ms(first_new.received), 'first_form': first_new.subnet_id,
            'to_awaited_form_ms': ms(first_awaited.received),
            'to_first_post_decision_frame_result_ms': ms(first_post.received) if first_post else None,
            'first_new_frame_published_at_ms': ms(bench.frame_time(first_new.seq)),
            'first_result_inference_ms': round(first_new.inference_ms, 3),
            'first_result_node_latency_ms': round(first_new.node_latency_ms, 3),
            'post_decision_frames_served_by_old': sum(
                1 for r in after if r.subnet_id not in new_forms and r.received < first_new.received),
            'results_from_shared_form_before_awaited': sum(
                1 for r in results if r.subnet_id in new_forms - {awaited} and r.received < first_awaited.received)}


# ---- the alternative: reload the point from the checkpoint ------------------------------------------------

def reload_from_table(table_path: Path, point_id: str, resolution: int, channels: int) -> float:
    """ms: `SubnetPool.from_table` on a one-point table (its form built at start-up) + one inference."""
    import torch

    from dynofa_ros.engine.pool import SubnetPool
    t0 = time.perf_counter()
    pool = SubnetPool.from_table(table_path, device='cpu', initial=point_id)
    pool.infer(torch.zeros(1, channels, resolution, resolution))
    elapsed = (time.perf_counter() - t0) * 1e3
    pool.close()
    return elapsed


def reload_extract(data: dict[str, Any], subnet_id: str, variant: str, resolution: int) -> float:
    """ms: `load_supernet` + `extract` + BN load (+ the variant build) + one forward pass."""
    import torch

    from dynofa_ros.engine.bn_stats import load_bn_state, load_bn_stats
    from dynofa_ros.engine.graph_variants import make_variant
    from dynofa_ros.supernet.checkpoint import load_supernet
    row = next(r for r in data['points'] if r['id'] == subnet_id)
    t0 = time.perf_counter()
    net, _ = load_supernet(data['supernet']['checkpoint'], family=data['supernet']['family'])
    module = net.extract(subnet_id)
    if row.get('bn_stats'):
        load_bn_state(module, load_bn_stats(row['bn_stats'], subnet_id))
    example = torch.zeros(1, net.in_channels, resolution, resolution)
    if variant != 'eager':
        module = make_variant(module, variant, example=example)
    with torch.inference_mode():
        module(example)
    return (time.perf_counter() - t0) * 1e3


def reload_round(tables: dict[str, Path], data: dict[str, Any], points: Points, variant: str,
                 resolution: int, rng: random.Random, with_extract: bool) -> dict[str, float]:
    """One of each reload (the extract one only `with_extract`), in a shuffled order."""
    channels = data['supernet']['in_channels']
    jobs = {'from_table_eager_ms': lambda: reload_from_table(tables['eager'], points.target, resolution, channels),
            'from_table_private_ms': lambda: reload_from_table(tables['private'], points.private, resolution,
                                                               channels),
            'extract_private_ms': lambda: reload_extract(data, points.target, variant, resolution)}
    order = [name for name in jobs if with_extract or not name.startswith('extract')]
    rng.shuffle(order)
    return {name: round(jobs[name](), 3) for name in order}


# ---- the run ------------------------------------------------------------------------------------------

def run_rounds(bench: Bench, points: Points, args: argparse.Namespace,
               reload: Callable[[random.Random, bool], dict[str, float]]
               ) -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, float]]]:
    """Warm-up rounds (not kept), then `args.rounds` rounds: every kind once (in CYCLE order, or
    shuffled), then the reloads with the camera paused."""
    rng = random.Random(args.seed)
    samples: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    reloads: list[dict[str, float]] = []
    for index in range(-args.warmup_rounds, args.rounds):
        order = list(CYCLE)
        if args.order == 'shuffle':
            rng.shuffle(order)
        for kind in order:
            prepare(bench, points, kind, args.settle_s)
            entry = {'round': index, **switch_once(bench, points, kind, args.kick_hz, args.kick_ms / 1e3)}
            if index >= 0:
                samples[kind].append(entry)
        bench.paused.set()
        time.sleep(0.1)  # the node finishes its last frame
        times = reload(rng, index % args.extract_every == 0)
        bench.paused.clear()
        if index >= 0:
            reloads.append(times)
        short = {k: samples[k][-1].get('to_awaited_form_ms') if samples[k] and index >= 0 else None for k in KINDS}
        print(f'round {index}: awaited form ms {short}, reload ms {times}', flush=True)
    return samples, reloads


def stats(values: list[float | None]) -> dict[str, float | int | None]:
    """p50 / p99 / max / min / mean (linear interpolation) and n, of the values that are not None."""
    arr = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if arr.size == 0:
        return {'n': 0, 'p50': None, 'p99': None, 'max': None, 'min': None, 'mean': None}
    return {'n': int(arr.size), 'p50': round(float(np.percentile(arr, 50)), 2),
            'p99': round(float(np.percentile(arr, 99)), 2), 'max': round(float(arr.max()), 2),
            'min': round(float(arr.min()), 2), 'mean': round(float(arr.mean()), 2)}


METRICS = ('to_first_result_ms', 'to_awaited_form_ms', 'to_first_post_decision_frame_result_ms',
           'first_new_frame_published_at_ms', 'first_result_inference_ms', 'first_result_node_latency_ms')


def summarise(samples: dict[str, list[dict[str, Any]]], reloads: list[dict[str, float]]) -> dict[str, Any]:
    """Per kind: each metric's statistics, timeouts, which form served first; reloads; ratios."""
    kinds: dict[str, Any] = {}
    for kind, entries in samples.items():
        done = [e for e in entries if not e.get('timeout')]
        forms: dict[str, int] = {}
        for e in done:
            forms[e['first_form']] = forms.get(e['first_form'], 0) + 1
        kinds[kind] = {**{m: stats([e[m] for e in done]) for m in METRICS},
                       'timeouts': len(entries) - len(done), 'first_form_counts': forms,
                       'post_decision_frames_served_by_old': stats([e['post_decision_frames_served_by_old']
                                                                    for e in done]),
                       'results_from_shared_form_before_awaited': sum(
                           e['results_from_shared_form_before_awaited'] for e in done),
                       'inference_errors': sum(e['inference_errors'] for e in done),
                       'switches_with_inference_errors': sum(1 for e in done if e['inference_errors'])}
    names = sorted({name for r in reloads for name in r})
    reload = {name: stats([r.get(name) for r in reloads]) for name in names}
    p50 = lambda kind, metric: kinds[kind][metric]['p50']  # noqa: E731
    ratio = lambda a, b: round(a / b, 1) if a and b else None  # noqa: E731
    ratios = {'shared': ratio(reload['from_table_eager_ms']['p50'], p50('shared', 'to_first_result_ms')),
              'resident_private': ratio(reload['from_table_private_ms']['p50'],
                                        p50('resident_private', 'to_awaited_form_ms')),
              'non_resident_private_first_result': ratio(reload['from_table_private_ms']['p50'],
                                                         p50('non_resident_private', 'to_first_result_ms')),
              'non_resident_private_private_form': ratio(reload['from_table_private_ms']['p50'],
                                                         p50('non_resident_private', 'to_awaited_form_ms'))}
    return {'kinds': kinds, 'reload': reload, 'reload_p50_over_switch_p50': ratios}


def git(*args: str) -> str:
    return subprocess.run(['git', *args], cwd=REPO, capture_output=True, text=True).stdout.strip()


def node_parameters(table: Path, neutral: str) -> dict[str, Any]:
    """The node's parameters: the brief's settings; a tiny budget so no private form is built at start."""
    return {'workload': WORKLOAD, 'operating_points': str(table), 'initial_subnet': neutral, 'threads': 1,
            'status_rate_hz': 10.0, 'qos_reliability': 'reliable', 'qos_depth': 10, 'memory_budget_mb': 0.001}


def measure(args: argparse.Namespace, data: dict[str, Any], points: Points, variant: str,
            resolution: int) -> tuple[dict, list, dict[str, Any]]:
    """The node process and this process's bench node; returns (samples, reloads, what the node said)."""
    from dynofa_ros.process_launch import ros_graph
    tmp = Path(tempfile.mkdtemp(prefix='bench_switch_'))
    target_row = next(r for r in data['points'] if r['id'] == points.target)
    private_row = variant_row(data, points.target, variant)
    node_table = write_table(data, eager_rows(data) + [private_row], tmp / 'variants.yaml')
    tables = {'eager': write_table(data, [target_row], tmp / 'eager.yaml'),
              'private': write_table(data, [private_row], tmp / 'private.yaml')}
    with ros_graph(log_dir=tmp / 'logs') as graph:
        for key in ('ROS_LOCALHOST_ONLY', 'ROS_AUTOMATIC_DISCOVERY_RANGE'):  # discover like the node
            os.environ.pop(key, None)
            if key in graph.env:
                os.environ[key] = graph.env[key]
        node = graph.start('perception_node', name='perception', parameters=node_parameters(node_table,
                                                                                            points.neutral))
        bench = Bench(graph.domain_id, args.camera_hz)
        try:
            wait_for(lambda: bench.results_since(0.0) or not node.running(), 120, 'the node serving')
            if not node.running():
                raise RuntimeError('the perception node exited:\n' + graph.dump_logs())
            samples, reloads = run_rounds(bench, points, args,
                                          lambda rng, extract: reload_round(tables, data, points, variant,
                                                                            resolution, rng, extract))
            final = bench.last_diagnostics()
        except Exception:
            print(graph.dump_logs(), file=sys.stderr)
            raise
        finally:
            bench.close()
        lines = node.output().splitlines()
    counts = {k: final.get(k) for k in ('frames_received', 'frames_processed', 'frames_dropped', 'errors',
                                        'commands_rejected', 'last_problem')}
    return samples, reloads, {'final_counts': counts,
                              'log_warnings': [x for x in lines if 'WARN' in x or 'ERROR' in x][-20:]}


def arguments() -> argparse.Namespace:
    """The command line (defaults: 30 rounds, 50 Hz camera, ~5 minutes on a busy 2-core machine)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--rounds', type=int, default=30, help='measured rounds (every kind once each)')
    parser.add_argument('--warmup-rounds', type=int, default=2, help='rounds run first and not kept')
    parser.add_argument('--camera-hz', type=float, default=50.0)
    parser.add_argument('--kick-hz', type=float, default=500.0, help='extra frames right after a decision')
    parser.add_argument('--kick-ms', type=float, default=60.0, help='how long the burst lasts (0: none)')
    parser.add_argument('--settle-s', type=float, default=0.2, help='steady serving of N before a switch')
    parser.add_argument('--table', default=str(SHIPPED), help='operating-point table (default: the shipped default)')
    parser.add_argument('--point', default='', help='the target sub-network P (default: the most accurate)')
    parser.add_argument('--variant', default='', help='its private form (default: frozen if known, else fused)')
    parser.add_argument('--order', choices=('cycle', 'shuffle'), default='cycle',
                        help='kinds in every round: the fixed CYCLE (saves a build per round) or shuffled')
    parser.add_argument('--extract-every', type=int, default=1,
                        help='the load_supernet+extract reload in every n-th round (from_table ones in all)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', default=str(REPO / 'bench' / 'results' / 'switching.json'))
    return parser.parse_args()


def fmt(s: dict[str, Any]) -> str:
    """'p50 / p99 / max' of a stats dict, ms."""
    return '-' if not s['n'] else f"{s['p50']:.1f} / {s['p99']:.1f} / {s['max']:.1f}"


def write_markdown(report: dict[str, Any], path: Path) -> None:
    """The headline table, the reload alternative and the conditions."""
    s, k, r = report['summary'], report['summary']['kinds'], report['summary']['reload']
    ratios = s['reload_p50_over_switch_p50']
    rows = [('shared (eager P)', k['shared'], 'to_first_result_ms', r['from_table_eager_ms'], ratios['shared']),
            (f'resident private (P@{report["variant"]})', k['resident_private'], 'to_awaited_form_ms',
             r['from_table_private_ms'], ratios['resident_private']),
            ('non-resident private: first result, any form', k['non_resident_private'], 'to_first_result_ms',
             r['from_table_private_ms'], ratios['non_resident_private_first_result']),
            (f'non-resident private: first P@{report["variant"]} result', k['non_resident_private'],
             'to_awaited_form_ms', r['from_table_private_ms'], ratios['non_resident_private_private_form'])]
    lines = ['# Switching latency through ROS', '',
             f"Decision published -> first `InferenceResult` from the new point, received by the bench process "
             f"(one clock). Perception node as a real process (1 torch thread, reliable QoS depth 10), camera "
             f"{report['camera_hz']:g} Hz {FRAME_SIZE}x{FRAME_SIZE} rgb8 plus a {report['kick_hz']:g} Hz burst for "
             f"{report['kick_ms']:g} ms after each decision; {report['rounds']} rounds, each kind once per round "
             f"({report['order']} order); from N = `{report['points']['neutral']}` to P = `{report['points']['target']}`. "
             f"Load average {report['machine']['load_avg_start'][0]:.2f} at start, "
             f"{report['machine']['load_avg_end'][0]:.2f} at the end ({report['machine']['cpu_count']} cores, "
             f"shared with other jobs); torch {report['torch']}. Produced by `{report['command']}` "
             f"(commit {report['commit']}).", '',
             '| target | n | timeouts | ms p50 / p99 / max | reload ms p50 / p99 / max | reload p50 / switch p50 |',
             '|---|---|---|---|---|---|']
    for label, kind, metric, reload, ratio in rows:
        lines.append(f"| {label} | {kind[metric]['n']} | {kind['timeouts']} | {fmt(kind[metric])} | "
                     f"{fmt(reload)} | {ratio if ratio is not None else '-'}x |")
    lines += ['', 'Reload = `SubnetPool.from_table` on a one-point table of the same point (its form built at '
              'start-up) + one inference, in the bench process (1 torch thread), camera paused, in every round. '
              f"`load_supernet` + `extract` + BN + {report['variant']} build + one forward "
              f"(n={r['extract_private_ms']['n']}): {fmt(r['extract_private_ms'])} ms.",
              '', 'Of the time to the first result, the node itself (frame arrival -> result published) took '
              'p50 / p99 / max ms: ' + ', '.join(f"{kind} {fmt(k[kind]['first_result_node_latency_ms'])}"
                                               for kind in KINDS) + '; the model alone: ' + ', '.join(
                  f"{kind} {fmt(k[kind]['first_result_inference_ms'])}" for kind in KINDS) + '. The frame it '
              'served was published after the decision by: ' + ', '.join(
                  f"{kind} {fmt(k[kind]['first_new_frame_published_at_ms'])}" for kind in KINDS) + ' ms.',
              '', 'Camera-period view: decision -> result of the first frame *published after* the decision '
              'that the new sub-network served (p50 / p99 / max ms): ' + ', '.join(
                  f"{kind} {fmt(k[kind]['to_first_post_decision_frame_result_ms'])}" for kind in KINDS) + '.',
              'First form to serve after the decision: ' + ', '.join(
                  f"{kind} {k[kind]['first_form_counts']}" for kind in KINDS).replace(
                  report['points']['target'], 'P') + '.',
              'Frames whose inference raised in the node during a switch (decision to the awaited form, from '
              '/diagnostics `errors`): ' + ', '.join(
                  f"{kind} {k[kind]['inference_errors']} in {k[kind]['switches_with_inference_errors']} switches"
                  for kind in KINDS) + f"; node totals at the end: {report['node']['final_counts']}.", '']
    path.write_text('\n'.join(lines) + '\n')


def main() -> None:
    """Measure, then write the JSON (every sample) and the Markdown summary."""
    args = arguments()
    import torch

    from dynofa_ros.operating_points import load_table
    torch.set_num_threads(1)  # as the node's threads=1
    src = Path(args.table)
    data, table = table_rows(src), load_table(src)
    eager = [p for p in table.points if p.graph_variant == 'eager']
    target = args.point or max(eager, key=lambda p: p.accuracy).id
    variant = args.variant or default_variant()
    fastest = min(eager, key=lambda p: p.latency(table.device_for('cpu')))
    points = Points(fastest.id, target, f'{target}@{variant}')
    resolution = table.point(target).resolution
    load_start, t0 = os.getloadavg(), time.monotonic()
    samples, reloads, node = measure(args, data, points, variant, resolution)
    report = {'command': 'python bench/bench_switch.py ' + ' '.join(sys.argv[1:]),
              'commit': git('rev-parse', '--short', 'HEAD') + ('+dirty' if git('status', '--porcelain', '-uno')
                                                               else ''),
              'date_utc': time.strftime('%Y-%m-%d %H:%M', time.gmtime()), 'torch': torch.__version__,
              'machine': {'cpu_count': os.cpu_count(), 'processor': platform.processor() or platform.machine(),
                          'load_avg_start': [round(x, 2) for x in load_start],
                          'load_avg_end': [round(x, 2) for x in os.getloadavg()]},
              'run_s': round(time.monotonic() - t0, 1), 'rounds': args.rounds, 'warmup_rounds': args.warmup_rounds,
              'camera_hz': args.camera_hz, 'kick_hz': args.kick_hz, 'kick_ms': args.kick_ms,
              'settle_s': args.settle_s, 'order': args.order, 'extract_every': args.extract_every, 'frame': f'{FRAME_SIZE}x{FRAME_SIZE} rgb8', 'variant': variant,
              'points': {'neutral': points.neutral, 'target': points.target, 'private': points.private},
              'node_parameters': {k: v for k, v in node_parameters(Path('variants.yaml'), points.neutral).items()},
              'node': node,
              'summary': summarise(samples, reloads), 'samples': samples, 'reloads': reloads}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + '\n')
    write_markdown(report, out.with_suffix('.md'))
    print(json.dumps(report['summary'], indent=1))
    print('wrote', out, 'and', out.with_suffix('.md'))


if __name__ == '__main__':
    main()
