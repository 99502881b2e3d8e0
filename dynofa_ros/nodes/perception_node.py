"""Perception node: classifies camera frames with a switchable Dynamic-OFA sub-network pool.

Frames go into a keep-latest slot and an inference thread serves the newest one, so the executor that
receives images never runs the model and latency never builds up in a queue. The active sub-network
changes between two frames, through `subnet_decision` messages for this workload or the `subnet_id`
parameter. Bad input is counted and warned about (rate-limited); the node keeps serving.
"""
from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from dynofa_ros.nodes.lifecycle import run_node
from dynofa_ros.nodes.parameters import describe
from dynofa_ros.msg import InferenceResult, PerformanceTarget, SubnetDecision, WorkloadStatus
from dynofa_ros.nodes.image_conversion import (array_to_image, check_compressed, check_image, compressed_to_array,
                                               image_to_array)
from dynofa_ros.operating_points import OperatingPointTable, default_table_path, load_table
from dynofa_ros.perception.classifier import Classification, Classifier
from dynofa_ros.perception.image_codec import DEFAULT_MAX_PIXELS, ImageDecodeError
from dynofa_ros.perception.preprocess import Preprocessor
from dynofa_ros.perception.serving import InferenceWorker, LatestFrameSlot
from dynofa_ros.perception.stats import LatencyWindow, RateMeter

WARN_PERIOD_S = 5.0


@dataclass
class Frame:
    header: Header
    decode: Callable[[], np.ndarray]  # run by the inference thread: dropped frames are never decoded
    received: float  # steady clock


@dataclass
class Target:
    max_latency_ms: float = 0.0
    min_accuracy: float = 0.0


class PerceptionNode(Node):
    def __init__(self) -> None:
        super().__init__('perception_node')
        self.slot: LatestFrameSlot[Frame] = LatestFrameSlot()
        self.worker = InferenceWorker(self.slot, self._serve, self._on_serve_error)  # started when ready
        p = self._declare
        self.workload = p('workload', 'default', 'Workload name; SubnetDecision/PerformanceTarget for '
                          'other workloads are ignored.')
        table_path = p('operating_points', '', 'Operating-point table (YAML). Empty: the shipped '
                       'Fashion-MNIST table.') or str(default_table_path())
        checkpoint = p('checkpoint', '', "Supernet checkpoint replacing the table's (empty: the table's).")
        device = p('device', 'cpu', "Torch device: cpu, cuda or cuda:N.")
        threads = p('threads', 0, 'Torch intra-op threads (0: torch default).')
        initial = p('initial_subnet', '', 'Sub-network id to start with (empty: the most accurate).')
        p('subnet_id', '', 'Active sub-network id; set it to switch at run time.', read_only=False)
        top_k = p('top_k', 3, 'Number of classes in each InferenceResult.', read_only=False)
        labels_file = p('labels_file', '', 'Text file with one class name per line (empty: the table).')
        mean = p('mean', [0.0], 'Normalisation mean per channel (0..1 scale; [0.0] with std [0.0]: table).')
        std = p('std', [0.0], 'Normalisation std per channel.')
        transport = p('transport', 'raw', "raw (sensor_msgs/Image on 'image') or compressed "
                           "(sensor_msgs/CompressedImage on 'image/compressed').")
        reliability = p('qos_reliability', 'best_effort', 'best_effort (matches every camera) or reliable.')
        depth = p('qos_depth', 1, 'Subscription queue depth; 1 keeps only the latest frame.')
        status_rate = p('status_rate_hz', 2.0, 'WorkloadStatus and /diagnostics rate.')
        window = p('latency_window', 100, 'Frames in the latency percentile window.')
        memory_budget = p('memory_budget_mb', 0.0, 'Memory for materialised sub-networks (0: all).')
        self.max_pixels = p('max_pixels', DEFAULT_MAX_PIXELS, 'Largest frame (width*height, > 0) decoded; '
                            'larger ones are rejected from their fields or header, before decoding.')
        if self.max_pixels <= 0:
            raise ValueError(f'max_pixels must be > 0, got {self.max_pixels}')

        if threads > 0:
            import torch
            torch.set_num_threads(threads)
        self.table: OperatingPointTable = load_table(table_path)
        self.model = build_model(table_path, device, memory_budget, checkpoint)
        if initial:
            self.model.switch(initial)
        elif self.table.points:
            self.model.switch(max(self.table.points, key=lambda pt: pt.accuracy).id)
        info = self.table.supernet
        labels = read_labels(labels_file) if labels_file else list(info.labels or [])
        if mean == [0.0] and std == [0.0]:
            mean, std = list(info.normalization.mean), list(info.normalization.std)
        self.classifier = Classifier(self.model, Preprocessor(mean, std, info.in_channels, device),
                                     labels, top_k)

        self.counts = {'received': 0, 'processed': 0, 'dropped': 0, 'rejected': 0,
                       'commands_rejected': 0, 'errors': 0}
        self.counts_lock = threading.Lock()
        self.last_problem = ''
        self.target = Target()
        self.latency = LatencyWindow(window)
        self.input_rate, self.output_rate = RateMeter(), RateMeter()
        self.foreign_workloads: set[str] = set()
        self.last_warned: dict[str, float] = {}

        self.result_pub = self.create_publisher(InferenceResult, 'inference_result', 10)
        self.status_pub = self.create_publisher(WorkloadStatus, 'workload_status', 10)
        self.diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.overlay_pub = self.create_publisher(Image, 'overlay', 1)
        qos = QoSProfile(  # the sensor-data profile, with the depth and reliability asked for
            history=HistoryPolicy.KEEP_LAST, depth=depth, durability=qos_profile_sensor_data.durability,
            reliability=ReliabilityPolicy.RELIABLE if reliability == 'reliable' else ReliabilityPolicy.BEST_EFFORT)
        if transport == 'compressed':
            self.create_subscription(CompressedImage, 'image/compressed', self._on_compressed, qos)
        else:
            self.create_subscription(Image, 'image', self._on_image, qos)
        self.create_subscription(SubnetDecision, 'subnet_decision', self._on_decision, 10)
        self.create_subscription(PerformanceTarget, 'performance_target', self._on_target, 10)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        # Steady clock: health keeps being reported while a replayed bag pauses (stamps use ROS time).
        self.create_timer(1.0 / status_rate, self._publish_status, clock=Clock(clock_type=ClockType.STEADY_TIME))

        self.worker.start()
        self.get_logger().info(f"workload '{self.workload}': {len(self.table.points)} operating points "
                               f"from {table_path}, active {self.model.active_subnet_id()} on {device}")

    # ---- parameters -------------------------------------------------------------------------
    def _declare(self, name: str, default, description: str, read_only: bool = True):
        """Parameters are read at start-up (read-only) unless the node applies changes at run time."""
        return self.declare_parameter(name, default, describe(description, read_only)).value

    def _on_set_parameters(self, params) -> SetParametersResult:
        for param in params:
            if param.name == 'subnet_id' and param.value:
                try:
                    self._switch(param.value, 'parameter subnet_id')
                except KeyError as exc:
                    return SetParametersResult(successful=False, reason=str(exc))
            elif param.name == 'top_k':
                if param.value < 1:
                    return SetParametersResult(successful=False, reason='top_k must be >= 1')
                self.classifier.top_k = param.value
        return SetParametersResult(successful=True)

    def _switch(self, subnet_id: str, reason: str) -> None:
        """Activate `subnet_id` for the next frame (KeyError if unknown); one path for topic and parameter."""
        self.model.switch(subnet_id)
        self.latency.clear()  # the window describes the previous sub-network
        self.get_logger().info(f'switched to {subnet_id} ({reason})')

    # ---- inputs (executor thread: check and hand over; never decode or run the model) ----------
    def _on_image(self, msg: Image) -> None:
        self._accept(msg.header, lambda: image_to_array(msg, self.max_pixels),
                     lambda: check_image(msg, self.max_pixels))

    def _on_compressed(self, msg: CompressedImage) -> None:
        self._accept(msg.header, lambda: compressed_to_array(msg, self.max_pixels),
                     lambda: check_compressed(msg, self.max_pixels))

    def _accept(self, header: Header, decode: Callable[[], np.ndarray], check: Callable[[], None]) -> None:
        """Cheap checks here; decoding happens on the inference thread, only for frames it serves."""
        now = time.monotonic()  # node latency counts from here
        self.input_rate.tick(now)
        with self.counts_lock:
            self.counts['received'] += 1
        try:
            check()
        except ImageDecodeError as exc:
            self._reject_image(exc)
            return
        if self.slot.put(Frame(header, decode, now)):
            with self.counts_lock:
                self.counts['dropped'] += 1

    def _reject_image(self, exc: ImageDecodeError) -> None:
        self._reject('rejected', f'bad image: {exc}', str(exc).split(' ', 1)[0])

    def _reject(self, counter: str, problem: str, kind: str) -> None:
        """Count the problem; warn at most once per WARN_PERIOD_S for each kind of problem."""
        now = time.monotonic()
        with self.counts_lock:
            self.counts[counter] += 1
            self.last_problem = problem
            suppressed = now - self.last_warned.get(kind, -math.inf) < WARN_PERIOD_S
            if not suppressed:
                self.last_warned[kind] = now
        if not suppressed:
            self.get_logger().warning(problem)

    def _on_decision(self, msg: SubnetDecision) -> None:
        if msg.workload != self.workload:
            if msg.workload not in self.foreign_workloads:  # the topic is shared by all workloads
                self.foreign_workloads.add(msg.workload)
                self.get_logger().warning(f"ignoring decisions for workload '{msg.workload}' "
                                          f"(this node serves '{self.workload}')")
            return
        if msg.subnet_id == self.model.active_subnet_id():
            return
        try:
            self._switch(msg.subnet_id, msg.reason)
        except KeyError as exc:
            self._reject('commands_rejected', f'decision rejected: {exc}', 'decision')

    def _on_target(self, msg: PerformanceTarget) -> None:
        if msg.workload != self.workload:
            return
        values = {'max_latency_ms': msg.max_latency_ms, 'min_accuracy': msg.min_accuracy}
        for name, value in values.items():
            if math.isnan(value):
                self._reject('commands_rejected', f'target {name} is NaN: treated as no constraint', 'target')
                values[name] = 0.0
            elif value < 0 or math.isinf(value):
                self._reject('commands_rejected', f'target {name}={value} rejected (must be finite, >= 0)', 'target')
                return
        self.target = Target(**values)

    # ---- inference thread ------------------------------------------------------------------
    def _serve(self, frame: Frame) -> None:
        try:
            pixels = frame.decode()
        except ImageDecodeError as exc:  # e.g. a corrupt JPEG
            self._reject_image(exc)
            return
        result: Classification = self.classifier.classify(pixels)
        self.latency.add(result.preprocess_ms + result.inference_ms + result.postprocess_ms)
        msg = InferenceResult(header=frame.header, workload=self.workload, subnet_id=result.subnet_id,
                              class_ids=result.class_ids, scores=result.scores, labels=result.labels,
                              preprocess_ms=result.preprocess_ms, inference_ms=result.inference_ms,
                              postprocess_ms=result.postprocess_ms)
        msg.node_latency_ms = (time.monotonic() - frame.received) * 1e3
        self.result_pub.publish(msg)
        self.output_rate.tick()
        with self.counts_lock:
            self.counts['processed'] += 1
        if self.overlay_pub.get_subscription_count() > 0:
            self.overlay_pub.publish(draw_overlay(frame.header, pixels, result))

    def _on_serve_error(self, frame: Frame, exc: Exception) -> None:
        self._reject('errors', f'inference failed: {type(exc).__name__}: {exc}', 'inference')

    # ---- status ----------------------------------------------------------------------------
    def target_check(self, p95: float) -> tuple[bool, str]:
        problems = []
        if self.target.max_latency_ms > 0 and not math.isnan(p95) and p95 > self.target.max_latency_ms:
            problems.append(f'p95 {p95:.1f} ms > {self.target.max_latency_ms:.1f} ms')
        if self.target.min_accuracy > 0:
            accuracy = self.table.point(self.model.active_subnet_id()).accuracy
            if accuracy < self.target.min_accuracy:
                problems.append(f'accuracy {accuracy:.3f} < {self.target.min_accuracy:.3f}')
        return not problems, '; '.join(problems)

    def _publish_status(self) -> None:
        p50, p95 = self.latency.percentile(50), self.latency.percentile(95)
        met, why = self.target_check(p95)
        active = self.model.active_subnet_id()
        point = self.table.point(active)
        with self.counts_lock:
            counts = dict(self.counts)
            last_problem = self.last_problem
        status = WorkloadStatus(
            workload=self.workload, active_subnet_id=active, graph_variant=point.graph_variant,
            latency_p50_ms=p50, latency_p95_ms=p95, frames_received=counts['received'],
            frames_processed=counts['processed'], frames_dropped=counts['dropped'],
            frames_rejected=counts['rejected'], input_rate_hz=self.input_rate.rate_hz(),
            output_rate_hz=self.output_rate.rate_hz(), target_met=met, target_status=why,
            memory_mb=self._materialised_mb())
        status.header.stamp = self.get_clock().now().to_msg()
        self.status_pub.publish(status)
        level, message = DiagnosticStatus.OK, 'serving'
        if counts['errors']:
            level, message = DiagnosticStatus.ERROR, last_problem
        elif not met or counts['rejected'] or counts['commands_rejected']:
            level, message = DiagnosticStatus.WARN, why or last_problem
        values = {'active_subnet_id': active, 'latency_p50_ms': f'{p50:.2f}', 'latency_p95_ms': f'{p95:.2f}',
                  'input_rate_hz': f'{status.input_rate_hz:.1f}', 'output_rate_hz': f'{status.output_rate_hz:.1f}',
                  **{f'frames_{k}' if k in ('received', 'processed', 'dropped', 'rejected') else k: str(v)
                     for k, v in counts.items()}, 'last_problem': last_problem}
        diag = DiagnosticArray(status=[DiagnosticStatus(
            level=level, name=f'dynofa_ros: perception {self.workload}', message=message,
            hardware_id=self.get_fully_qualified_name(),
            values=[KeyValue(key=k, value=v) for k, v in values.items()])])
        diag.header.stamp = status.header.stamp
        self.diag_pub.publish(diag)

    def _materialised_mb(self) -> float:
        report = self.model.memory_report().values()
        return sum(entry['weight_bytes'] for entry in report if entry['materialised']) / 2**20

    def destroy_node(self) -> None:
        self.worker.stop()
        super().destroy_node()


def build_model(table_path: str, device: str, memory_budget_mb: float, checkpoint: str):
    """The engine's sub-network pool for a table (imported here so the node module stays light)."""
    from dynofa_ros.engine.pool import SubnetPool
    return SubnetPool.from_table(table_path, device=device, checkpoint=checkpoint or None,
                                 memory_budget_mb=memory_budget_mb if memory_budget_mb > 0 else None)


def read_labels(path: str) -> list[str]:
    with open(path, encoding='utf-8') as handle:
        return [line.strip() for line in handle if line.strip()]


def draw_overlay(header: Header, pixels: np.ndarray, result: Classification) -> Image:
    """The input frame with the top-1 label and score written on it (OpenCV when available)."""
    canvas = np.ascontiguousarray(pixels if pixels.shape[2] == 3 else np.repeat(pixels, 3, axis=2)).copy()
    text = f'{result.labels[0] or result.class_ids[0]} {result.scores[0]:.2f}' if result.class_ids else '-'
    try:
        import cv2
        cv2.putText(canvas, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 0), 1, cv2.LINE_AA)
    except ImportError:
        canvas[:4, :, :] = (255, 255, 0)  # a visible band when no text renderer is available
    return array_to_image(canvas, 'rgb8', header)


def main(args=None) -> None:
    run_node(PerceptionNode, 'perception_node', args)
