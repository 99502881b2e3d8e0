"""Perception node: classifies camera frames with a switchable Dynamic-OFA sub-network pool.

A managed (lifecycle) node: `configure` loads the table and the supernet and creates the topics,
`activate` starts the inference thread, `deactivate` stops serving, `cleanup` frees the model. With
`autostart` (default) `run_node` does configure + activate, so plain `ros2 run` works.

No executor runs the image subscription: the inference thread takes the frames (serialized) from the DDS
reader itself when it is ready for one, checks each one's fields in O(1) from the CDR bytes, and
deserialises and decodes only the newest, which it serves. The reader keeps `qos_depth` frames (1: the
latest) and overwrites the rest unseen, so a flood costs the executor, and the GIL, nothing, and latency
never builds up in a queue. The active sub-network
follows `subnet_decision` for this workload ("managed"), or the `subnet_id` parameter ("manual": set
by hand, decisions ignored until `subnet_id` is set to ""). Bad input is counted and warned about
(rate-limited); the node keeps serving.
"""
from __future__ import annotations

import gc
import math
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import CallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.guard_condition import GuardCondition
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from dynofa_ros.bounds import Bound
from dynofa_ros.msg import InferenceResult, PerformanceTarget, SubnetDecision, WorkloadStatus
from dynofa_ros.nodes.image_conversion import (array_to_image, check_compressed, check_image, compressed_to_array,
                                               image_to_array)
from dynofa_ros.nodes.lifecycle import ManagedNode, run_node
from dynofa_ros.nodes.parameters import describe
from dynofa_ros.nodes.qos import latched_qos
from dynofa_ros.operating_points import OperatingPointTable, default_table_path, load_table
from dynofa_ros.perception.cdr import peek_compressed, peek_image
from dynofa_ros.perception.classifier import Classification, Classifier
from dynofa_ros.perception.image_codec import DEFAULT_MAX_PIXELS, ImageDecodeError, check_raw
from dynofa_ros.perception.image_codec import check_compressed as check_compressed_fields
from dynofa_ros.perception.preprocess import Preprocessor
from dynofa_ros.perception.serving import InferenceWorker
from dynofa_ros.perception.stats import LatencyWindow, RateMeter, RecentNames, WindowedCounts
from dynofa_ros.targets import InvalidTarget, Target, target_from_msg
from dynofa_ros.text import clip

WARN_PERIOD_S = 5.0  # each kind of problem is logged at most this often
MAX_NAMES = 64  # foreign workloads and problem kinds remembered (LRU)
MAX_ID_CHARS = 256  # longer sub-network ids are rejected without a table lookup
MAX_MATERIALISED = 64  # resident point ids read from one decision
REASON_CHARS = 120  # what a log line quotes of a decision's reason
MAX_TOP_K = 1000
WATCHDOG_PERIOD_S = 1.0
DEVICE = re.compile(r'cpu|cuda(:[0-9]{1,2})?')

# name -> (default, description); all read-only (start-up) except RUNTIME
PARAMETERS: dict[str, tuple[Any, str]] = {
    'workload': ('default', 'Workload name; SubnetDecision/PerformanceTarget for other workloads are ignored.'),
    'operating_points': ('', 'Operating-point table (YAML). Empty: the shipped Fashion-MNIST table.'),
    'checkpoint': ('', "Supernet checkpoint replacing the table's (empty: the table's)."),
    'device': ('cpu', 'Torch device: cpu, cuda or cuda:N.'),
    'threads': (0, 'Torch intra-op threads, 0..256 (0: torch default).'),
    'initial_subnet': ('', 'Sub-network id to start with in managed mode (empty: the most accurate).'),
    'subnet_id': ('', 'Manual mode: the sub-network set by hand (decisions are ignored). "" returns to '
                      'managed mode (follow subnet_decision).'),
    'top_k': (3, f'Number of classes in each InferenceResult, 1..{MAX_TOP_K}.'),
    'labels_file': ('', 'Text file with one class name per line (empty: the table).'),
    'mean': ([0.0], 'Normalisation mean per channel (0..1 scale; [0.0] with std [0.0]: the table).'),
    'std': ([0.0], 'Normalisation std per channel.'),
    'transport': ('raw', "raw (sensor_msgs/Image on 'image') or compressed (sensor_msgs/CompressedImage on "
                         "'<resolved image topic>/compressed', as image_transport names it)."),
    'qos_reliability': ('best_effort', 'best_effort (matches every camera) or reliable (for reliable replays '
                                       'and drivers of large raw frames).'),
    'qos_depth': (1, 'Subscription queue depth, 1..100; 1 keeps only the latest frame.'),
    'status_rate_hz': (2.0, 'WorkloadStatus and /diagnostics rate, (0, 100] Hz.'),
    'latency_window': (100, 'Frames in the latency percentile window, 1..100000.'),
    'diagnostics_window_s': (5.0, 'Rates and problems in /diagnostics cover the last this many seconds '
                                  '(0.5..3600); no input for this long is a WARN.'),
    'no_publisher_warn_s': (5.0, 'Warn when the image subscription matches no publisher for this many '
                                 'seconds (0..3600; 0: never).'),
    'memory_budget_mb': (0.0, 'MiB of private forms (fused, frozen, int8, compiled copies) built at start-up and kept '
                               'while no decision names the resident set; shared forms are always resident. >= 0 '
                               '(0: none built until a decision or switch asks, none dropped).'),
    'max_pixels': (DEFAULT_MAX_PIXELS, 'Largest frame (width*height, > 0) decoded; larger ones are rejected '
                                       'from their fields or header, before decoding.'),
}
RUNTIME = ('subnet_id', 'top_k')


# name -> (valid?, what valid means); checked at start-up so a bad value is one FATAL line
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    'workload': (lambda v: 0 < len(v) <= 64 and v.isprintable(), 'a printable name of 1..64 characters'),
    'device': (lambda v: DEVICE.fullmatch(v) is not None, 'cpu, cuda or cuda:N'),
    'threads': (lambda v: 0 <= v <= 256, 'an integer 0..256 (0: torch default)'),
    'top_k': (lambda v: 1 <= v <= MAX_TOP_K, f'an integer 1..{MAX_TOP_K}'),
    'mean': (lambda v: 0 < len(v) <= 4 and all(map(math.isfinite, v)), '1..4 finite values'),
    'std': (lambda v: 0 < len(v) <= 4 and all(map(math.isfinite, v)), '1..4 finite values'),
    'transport': (lambda v: v in ('raw', 'compressed'), 'raw or compressed'),
    'qos_reliability': (lambda v: v in ('best_effort', 'reliable'), 'best_effort or reliable'),
    'qos_depth': (lambda v: 1 <= v <= 100, 'an integer 1..100'),
    'status_rate_hz': (Bound(0.0, 100.0, lo_open=True).holds, 'in (0, 100] Hz'),
    'latency_window': (lambda v: 1 <= v <= 100_000, 'an integer 1..100000'),
    'diagnostics_window_s': (Bound(0.5, 3600.0).holds, 'in [0.5, 3600] s'),
    'no_publisher_warn_s': (Bound(0.0, 3600.0).holds, 'in [0, 3600] s (0: never)'),
    'memory_budget_mb': (Bound(0.0, 1e9).holds, 'in [0, 1e9] MiB (0: no budget)'),
    'max_pixels': (lambda v: v > 0, '> 0'),
}


def check_settings(settings: dict[str, Any]) -> None:
    """ValueError naming the first parameter whose value is invalid (rclpy already checked the types)."""
    for name, (valid, rule) in RULES.items():
        value = settings[name]
        if not valid(value):
            raise ValueError(f'{name} must be {rule}, got {clip(repr(value))}')


Taken = tuple[bytes, dict]  # a serialized frame and its rmw message info, as take_message returns them


class NotSpun(CallbackGroup):
    """A callback group no executor runs: the inference thread takes its subscription's frames itself."""

    def can_execute(self, entity) -> bool:
        return False

    def beginning_execution(self, entity) -> bool:
        return False

    def ending_execution(self, entity) -> None:
        pass


class FrameTaker:
    """The inference thread's frame source: waits on, and takes from, a subscription no executor spins.

    Private rclpy API, used as rclpy.wait_for_message uses it (Humble and later): `_rclpy.WaitSet` and
    `Subscription.handle.take_message`.
    """

    def __init__(self, node: ManagedNode, subscription, max_batch: int) -> None:
        from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
        self._sub = subscription
        self._max_batch = max_batch
        self._closed = False
        self._wake = GuardCondition(None, None, context=node.context)
        self._wait_set = _rclpy.WaitSet(1, 1, 0, 0, 0, 0, node.context.handle)

    def take(self, timeout: float | None = None) -> list[Taken] | None:
        """Every frame the reader holds (oldest first, at most max_batch), waiting up to `timeout` for one."""
        batch = self._take_ready()
        if batch or self._closed:
            return batch or None
        self._wait_set.clear_entities()
        self._wait_set.add_subscription(self._sub.handle)
        self._wait_set.add_guard_condition(self._wake.handle)
        self._wait_set.wait(-1 if timeout is None else int(timeout * 1e9))  # releases the GIL
        return None if self._closed else self._take_ready() or None

    def _take_ready(self) -> list[Taken]:
        batch: list[Taken] = []
        with self._sub.handle:
            while len(batch) < self._max_batch:
                taken = self._sub.handle.take_message(self._sub.msg_type, True)
                if taken is None:
                    break
                batch.append(taken)
        return batch

    def discard(self) -> None:
        """Drop what the reader holds: frames that arrived while inactive are never served."""
        while self._take_ready():
            pass

    def close(self) -> None:
        self._closed = True
        self._wake.trigger()

    def destroy(self) -> None:
        self._wake.destroy()


class PerceptionNode(ManagedNode):
    def __init__(self) -> None:
        super().__init__('perception_node')
        self.settings: dict[str, Any] = {
            name: self.declare_parameter(name, default, describe(text, read_only=name not in RUNTIME)).value
            for name, (default, text) in PARAMETERS.items()}
        check_settings(self.settings)
        self.workload: str = self.settings['workload']
        self.max_pixels: int = self.settings['max_pixels']
        self.compressed = self.settings['transport'] == 'compressed'
        # image_transport naming: one remap of `image` moves the compressed topic too
        image_topic = self.resolve_topic_name('image')
        self.image_topic = self.resolve_topic_name(f'{image_topic}/compressed') if self.compressed else image_topic
        self.manual = bool(self.settings['subnet_id'])
        self.table: OperatingPointTable | None = None
        self.model = None
        self.classifier: Classifier | None = None
        self.taker: FrameTaker | None = None
        self.worker: InferenceWorker[list[Taken]] | None = None
        self.serving = False
        self._entities: list[tuple[Callable[[Any], Any], Any]] = []  # (destroy, entity) made by configure
        self.counts_lock = threading.Lock()
        self._reset_state()
        self.add_on_set_parameters_callback(self._on_set_parameters)

    def _reset_state(self) -> None:
        window_s = self.settings['diagnostics_window_s']
        self.counts = {'received': 0, 'processed': 0, 'dropped': 0, 'rejected': 0,
                       'commands_rejected': 0, 'errors': 0}
        self.events = WindowedCounts(window_s)  # problems over the diagnostics window
        self.input_rate, self.output_rate = RateMeter(window_s), RateMeter(window_s)
        self.latency = LatencyWindow(self.settings['latency_window'])
        self.last_problem = ''
        self.target = Target()
        self.foreign_workloads = RecentNames(MAX_NAMES)
        self.last_warned = RecentNames(MAX_NAMES)  # problem kind -> when it was last logged
        self.last_sequence = RecentNames(MAX_NAMES)  # publisher gid -> its last publication sequence number
        self.active_since = time.monotonic()
        self.last_input = self.no_publisher_since = None
        self.ignored_logged = self.overflow_logged = self.no_publisher_logged = False

    # ---- lifecycle --------------------------------------------------------------------------
    def configure(self) -> None:
        s = self.settings
        if s['threads'] > 0:
            import torch
            torch.set_num_threads(s['threads'])
        table_path = s['operating_points'] or str(default_table_path())
        self.table = load_table(table_path)
        self.model = build_model(table_path, s['device'], s['memory_budget_mb'], s['checkpoint'])
        first = s['subnet_id'] or s['initial_subnet'] or \
            (max(self.table.points, key=lambda pt: pt.accuracy).id if self.table.points else '')
        if first:
            self.model.switch(first)
        info = self.table.supernet
        labels = read_labels(s['labels_file']) if s['labels_file'] else list(info.labels or [])
        mean, std = s['mean'], s['std']
        if mean == [0.0] and std == [0.0]:
            mean, std = list(info.normalization.mean), list(info.normalization.std)
        self.classifier = Classifier(self.model, Preprocessor(mean, std, info.in_channels, s['device'], crop=info.crop),
                                     labels, s['top_k'])
        self._reset_state()
        self._create_interfaces()
        self.get_logger().info(
            f"workload '{self.workload}': loaded {len(self.table.points)} operating points from {table_path}, "
            f"active {self.model.active_subnet_id()} on {s['device']} ({self._mode()} mode); "
            f"input {self.image_topic}")

    def _create_interfaces(self) -> None:
        s = self.settings
        self.result_pub = self._made(self.destroy_lifecycle_publisher, self.create_lifecycle_publisher(
            InferenceResult, 'inference_result', 10))
        self.status_pub = self._made(self.destroy_lifecycle_publisher, self.create_lifecycle_publisher(
            WorkloadStatus, 'workload_status', 10))
        self.overlay_pub = self._made(self.destroy_lifecycle_publisher, self.create_lifecycle_publisher(
            Image, 'overlay', 1))
        # /diagnostics also while inactive: it says so
        self.diag_pub = self._made(self.destroy_publisher, self.create_publisher(DiagnosticArray, '/diagnostics', 10))
        qos = QoSProfile(  # the sensor-data profile, with the depth and reliability asked for
            history=HistoryPolicy.KEEP_LAST, depth=s['qos_depth'], durability=qos_profile_sensor_data.durability,
            reliability=ReliabilityPolicy.RELIABLE if s['qos_reliability'] == 'reliable'
            else ReliabilityPolicy.BEST_EFFORT)
        self.image_sub = self._made(self.destroy_subscription, self.create_subscription(
            CompressedImage if self.compressed else Image, self.image_topic, lambda _: None, qos,
            callback_group=NotSpun(), raw=True))  # the inference thread takes from it (FrameTaker)
        self._made(self.destroy_subscription,
                   self.create_subscription(SubnetDecision, 'subnet_decision', self._on_decision, latched_qos()))
        self._made(self.destroy_subscription,
                   self.create_subscription(PerformanceTarget, 'performance_target', self._on_target, 10))
        # Steady clock: health keeps being reported while a replayed bag pauses (stamps use ROS time).
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self._made(self.destroy_timer, self.create_timer(1.0 / s['status_rate_hz'], self._publish_status,
                                                         clock=steady))
        self._made(self.destroy_timer, self.create_timer(WATCHDOG_PERIOD_S, self._check_publishers, clock=steady))

    def _made(self, destroy: Callable[[Any], Any], entity):
        self._entities.append((destroy, entity))
        return entity

    def activate(self) -> None:
        self.taker = FrameTaker(self, self.image_sub, self.settings['qos_depth'])
        self.taker.discard()
        self.worker = InferenceWorker(self.taker, self._serve_batch, self._on_serve_error)
        self.worker.start()
        self.active_since = time.monotonic()
        self.serving = True
        self.get_logger().info(f'serving {self.image_topic}')

    def deactivate(self) -> None:
        self.serving = False  # frames arriving from now on are ignored (not served, not problems)
        if self.worker is not None:
            self.worker.stop()
            self.taker.destroy()
        self.worker = self.taker = None
        self.get_logger().info('inactive: not serving')

    def cleanup(self) -> None:
        """Free the model and every topic; safe when never configured, and idempotent."""
        self.serving = False
        while self._entities:
            destroy, entity = self._entities.pop()
            destroy(entity)
        freed = self.model is not None
        if freed:
            self.model.close()  # stop background builds before the model goes
        device = self.settings['device']
        self.table = self.model = self.classifier = None
        if freed:
            gc.collect()
            if device.startswith('cuda'):
                import torch
                torch.cuda.empty_cache()
            self.get_logger().info('cleaned up: model freed')

    def _mode(self) -> str:
        return 'manual' if self.manual else 'managed'

    # ---- parameters: validate the whole set, then apply ---------------------------------------
    def _on_set_parameters(self, params) -> SetParametersResult:
        """Validate every parameter of the set first; side effects only once all of them are valid.

        rclpy sets the values right after the on-set callbacks succeed (read-only and type checks ran
        before), so applying at the end of this, the node's only callback, happens exactly when the set
        succeeds. (Post-set callbacks are newer than Humble: add_post_set_parameters_callback is Iron+.)
        """
        changes = {}
        for param in params:
            if param.name == 'subnet_id':
                problem = self._subnet_problem(param.value)
            elif param.name == 'top_k':
                valid, rule = RULES['top_k']
                problem = None if valid(param.value) else f'top_k must be {rule}, got {param.value}'
            else:
                continue
            if problem:
                return SetParametersResult(successful=False, reason=problem)
            changes[param.name] = param.value
        self._apply_parameters(changes)
        return SetParametersResult(successful=True)

    def _subnet_problem(self, subnet_id: str) -> str | None:
        if not subnet_id:
            return None  # back to managed mode
        if self.model is None:
            return 'not configured: the operating-point table is not loaded yet'
        if len(subnet_id) > MAX_ID_CHARS or subnet_id not in self.model.subnet_ids():
            return f"unknown sub-network '{clip(subnet_id)}' (not in the operating-point table)"
        return None

    def _apply_parameters(self, changes: dict[str, Any]) -> None:
        self.settings.update(changes)
        if 'top_k' in changes and self.classifier is not None:
            self.classifier.top_k = changes['top_k']
        if 'subnet_id' not in changes:
            return
        if changes['subnet_id']:
            self.manual, self.ignored_logged = True, False
            self._switch(changes['subnet_id'], "manual mode: decisions are ignored until subnet_id is set to ''")
        elif self.manual:
            self.manual = False
            self.get_logger().info('managed mode: following subnet_decision again')

    def _switch(self, subnet_id: str, reason: str) -> None:
        """Activate `subnet_id` for the next frame (KeyError if unknown); one path for topic and parameter."""
        self.model.switch(subnet_id)
        self.latency.clear()  # the window describes the previous sub-network
        self.get_logger().info(f'switched to {subnet_id} ({clip(reason, REASON_CHARS)})')

    # ---- inputs (inference thread: O(1) checks on each serialized frame, decode only the newest) --------
    def _serve_batch(self, batch: list[Taken]) -> None:
        """Check every frame taken; serve the newest good one, count the others as dropped."""
        newest = None
        for data, info in batch:
            if self._admit(data, info):
                if newest is not None:
                    self._count('dropped')
                newest = (data, info)
        if newest is not None and self.serving:
            self._serve(*newest)

    def _admit(self, data: bytes, info: dict) -> bool:
        """Count the frame (and any the reader overwrote before it); False when its fields are bad."""
        now = time.monotonic()
        self.last_input = now
        unseen = self._unseen_before(info)
        self.input_rate.tick(now, 1 + unseen)
        with self.counts_lock:
            self.counts['received'] += 1 + unseen
            self.counts['dropped'] += unseen
        try:
            (self._check_compressed if self.compressed else self._check_image)(data)
        except ImageDecodeError as exc:
            self._reject_image(exc)
            return False
        return True

    def _unseen_before(self, info: dict) -> int:
        """Frames of this publisher overwritten in the reader (or lost) since its last one we took.

        From the publication sequence numbers, where rclpy reports them (Jazzy and Kilted do; else 0).
        Kilted also names the publisher; without that (Jazzy) they are counted only while exactly one
        publisher is matched, since several publishers' numbers interleave."""
        sequence, gid = info.get('publication_sequence_number'), info.get('publisher_gid')
        if not sequence:
            return 0
        if gid:
            key = bytes(gid['data'] if isinstance(gid, dict) else gid)
        elif matched_publishers(self, self.image_sub, self.image_topic) == 1:
            key = b'the only publisher'
        else:
            return 0
        last = self.last_sequence.get(key, None)
        self.last_sequence.put(key, sequence)
        return sequence - last - 1 if last is not None and sequence > last else 0

    def _count(self, counter: str) -> None:
        with self.counts_lock:
            self.counts[counter] += 1

    def _check_image(self, data: bytes) -> None:
        fields = peek_image(data)
        if fields is None:  # not plain CDR: deserialise to check (rare)
            check_image(deserialize_message(data, Image), self.max_pixels)
        else:
            check_raw(fields.encoding, fields.height, fields.width, fields.step, fields.data_size,
                      self.max_pixels)

    def _check_compressed(self, data: bytes) -> None:
        fields = peek_compressed(data)
        if fields is None:
            check_compressed(deserialize_message(data, CompressedImage), self.max_pixels)
        else:
            check_compressed_fields(fields.format, fields.data, self.max_pixels)

    def _reject_image(self, exc: ImageDecodeError) -> None:
        self._reject('rejected', f'bad image: {exc}', str(exc).split(' ', 1)[0])

    def _reject(self, counter: str, problem: str, kind: str) -> None:
        """Count the problem; warn at most once per WARN_PERIOD_S for each kind of problem."""
        now = time.monotonic()
        problem = clip(problem, 300)
        self.events.add(counter, problem, now)
        with self.counts_lock:
            self.counts[counter] += 1
            self.last_problem = problem
            suppressed = now - self.last_warned.get(kind) < WARN_PERIOD_S
            if not suppressed:
                self.last_warned.put(kind, now)
        if not suppressed:
            self.get_logger().warning(problem)

    def _on_decision(self, msg: SubnetDecision) -> None:
        if msg.workload != self.workload:
            self._note_foreign(msg.workload)  # the topic is shared by all workloads
            return
        if self.manual:
            if not self.ignored_logged:
                self.ignored_logged = True
                self.get_logger().info(f"manual mode: ignoring the decision {clip(msg.subnet_id)} (and later "
                                       f"ones) while subnet_id is set; set subnet_id to '' to follow decisions")
            return
        self._apply_materialised(msg.materialised)
        if msg.subnet_id == self.model.requested_subnet_id():
            return
        try:
            if len(msg.subnet_id) > MAX_ID_CHARS:
                raise KeyError(f'unknown sub-network {clip(msg.subnet_id)!r}')
            self._switch(msg.subnet_id, msg.reason)
        except KeyError as exc:
            self._reject('commands_rejected', f'decision rejected: {clip(exc, 200)}', 'decision')

    def _apply_materialised(self, ids: list[str]) -> None:
        """The manager's memory decision: which private forms stay resident (empty: our own budget)."""
        if not ids:
            return
        wanted = [i for i in ids[:MAX_MATERIALISED] if len(i) <= MAX_ID_CHARS]
        unknown = self.model.set_materialised(wanted)
        if unknown or len(wanted) < len(ids):
            self._reject('commands_rejected', f'decision names {len(ids) - len(wanted) + len(unknown)} resident '
                         f'point(s) not in the table or over the limits, e.g. {clip(unknown[:1] or ids[-1:])}',
                         'materialised')

    def _note_foreign(self, workload: str) -> None:
        """Log each other workload once, remembering at most MAX_NAMES of them."""
        if not self.foreign_workloads.put(workload):
            return
        self.get_logger().warning(f"ignoring decisions for workload '{clip(workload)}' "
                                  f"(this node serves '{self.workload}')")
        if self.foreign_workloads.overflowed and not self.overflow_logged:
            self.overflow_logged = True
            self.get_logger().warning(f'more than {MAX_NAMES} other workloads seen: remembering the '
                                      f'{MAX_NAMES} most recent (a forgotten one is logged again)')

    def _on_target(self, msg: PerformanceTarget) -> None:
        if msg.workload != self.workload:
            return
        try:
            self.target = target_from_msg(msg)
        except InvalidTarget as exc:  # the shared semantics: NaN/inf/negative rejected, 0 = no constraint
            self._reject('commands_rejected', f'target rejected, keeping the previous one: {exc}', 'target')

    # ---- inference thread ------------------------------------------------------------------
    def _serve(self, data: bytes, info: dict) -> None:
        if self.compressed:
            msg = deserialize_message(data, CompressedImage)
            decode: Callable[[], np.ndarray] = lambda: compressed_to_array(msg, self.max_pixels)  # noqa: E731
        else:
            msg = deserialize_message(data, Image)
            decode = lambda: image_to_array(msg, self.max_pixels)  # noqa: E731
        try:
            pixels = decode()
        except ImageDecodeError as exc:  # e.g. a corrupt JPEG
            self._reject_image(exc)
            return
        result: Classification = self.classifier.classify(pixels)
        self.latency.add(result.preprocess_ms + result.inference_ms + result.postprocess_ms)
        out = InferenceResult(header=msg.header, workload=self.workload, subnet_id=result.subnet_id,
                              class_ids=result.class_ids, scores=result.scores, labels=result.labels,
                              preprocess_ms=result.preprocess_ms, inference_ms=result.inference_ms,
                              postprocess_ms=result.postprocess_ms)
        out.node_latency_ms = (time.time_ns() - received_ns(info)) * 1e-6  # from arrival in the reader
        self.result_pub.publish(out)
        self.output_rate.tick()
        self._count('processed')
        if self.overlay_pub.get_subscription_count() > 0:
            self.overlay_pub.publish(draw_overlay(msg.header, pixels, result))

    def _on_serve_error(self, batch: list[Taken], exc: Exception) -> None:
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
        with self.counts_lock:
            counts = dict(self.counts)
        t = self.target
        status = WorkloadStatus(
            workload=self.workload, active_subnet_id=active, graph_variant=self.table.point(active).graph_variant,
            latency_p50_ms=p50, latency_p95_ms=p95, frames_received=counts['received'],
            frames_processed=counts['processed'], frames_dropped=counts['dropped'],
            frames_rejected=counts['rejected'], input_rate_hz=self.input_rate.rate_hz(),
            output_rate_hz=self.output_rate.rate_hz(), target_met=met, target_status=why,
            memory_mb=self._materialised_mb(), control_mode=self._mode(),
            target=PerformanceTarget(workload=self.workload, max_latency_ms=t.max_latency_ms,
                                     min_accuracy=t.min_accuracy, max_energy_mj=t.max_energy_mj,
                                     priority=t.priority))
        status.header.stamp = status.target.header.stamp = self.get_clock().now().to_msg()
        self.status_pub.publish(status)
        self._publish_diagnostics(status, counts, why)

    def _health(self, met: bool, why: str) -> tuple[bytes, str, dict[str, int]]:
        """Level and message from the last `diagnostics_window_s` only: old problems are forgotten."""
        now = time.monotonic()
        window = self.events.counts(now)
        if not self.serving:
            return DiagnosticStatus.OK, 'inactive (configured, not serving)', window
        if window.get('errors'):
            return DiagnosticStatus.ERROR, self.events.latest('errors', now), window
        idle_s = now - (self.last_input or self.active_since)
        if idle_s >= self.events.window_s:
            return DiagnosticStatus.WARN, f'no input for {idle_s:.0f} s on {self.image_topic}', window
        if not met:
            return DiagnosticStatus.WARN, why, window
        for kind in ('rejected', 'commands_rejected'):
            if window.get(kind):
                return DiagnosticStatus.WARN, self.events.latest(kind, now), window
        return DiagnosticStatus.OK, 'serving', window

    def _publish_diagnostics(self, status: WorkloadStatus, counts: dict[str, int], why: str) -> None:
        level, message, window = self._health(status.target_met, why)
        values = {'active_subnet_id': status.active_subnet_id, 'control_mode': status.control_mode,
                  'latency_p50_ms': f'{status.latency_p50_ms:.2f}', 'latency_p95_ms': f'{status.latency_p95_ms:.2f}',
                  'input_rate_hz': f'{status.input_rate_hz:.1f}', 'output_rate_hz': f'{status.output_rate_hz:.1f}',
                  **{f'frames_{k}' if k in ('received', 'processed', 'dropped', 'rejected') else k: str(v)
                     for k, v in counts.items()},
                  'diagnostics_window_s': f'{self.events.window_s:g}',
                  **{f'window_{k}': str(window.get(k, 0)) for k in ('rejected', 'commands_rejected', 'errors')},
                  'last_problem': self.last_problem, 'requested_subnet_id': self.model.requested_subnet_id(),
                  'resident_private_forms': clip(','.join(self._resident_private()), 2000),
                  'resident_mb': f'{status.memory_mb:.2f}'}
        diag = DiagnosticArray(status=[DiagnosticStatus(
            level=level, name=f'dynofa_ros: perception {self.workload}', message=message,
            hardware_id=self.get_fully_qualified_name(),
            values=[KeyValue(key=k, value=v) for k, v in values.items()])])
        diag.header.stamp = status.header.stamp
        self.diag_pub.publish(diag)

    def _check_publishers(self) -> None:
        """Warn once when nothing has matched the image subscription for `no_publisher_warn_s`."""
        limit = self.settings['no_publisher_warn_s']
        if not self.serving or limit <= 0:
            return
        if matched_publishers(self, self.image_sub, self.image_topic):
            self.no_publisher_since, self.no_publisher_logged = None, False
            return
        now = time.monotonic()
        self.no_publisher_since = self.no_publisher_since or now
        if now - self.no_publisher_since >= limit and not self.no_publisher_logged:
            self.no_publisher_logged = True
            self.get_logger().warning(
                f'no publisher matches {self.image_topic} after {limit:g} s: check the topic (remap with '
                f'-r image:=<camera topic>; transport:=compressed subscribes <image>/compressed) and the '
                f'QoS (qos_reliability:={self.settings["qos_reliability"]}; a reliable subscription does not '
                f'match a best-effort camera)')

    def _resident_private(self) -> list[str]:
        """Point ids whose private forms (frozen, int8, ...) are resident now."""
        return [k for k, e in self.model.memory_report().items() if e['materialised'] and not e['shared']]

    def _materialised_mb(self) -> float:
        """Resident model memory: the supernet, its shared derived tensors and every resident form."""
        return self.model.resident_bytes() / 2**20


def received_ns(info: dict) -> int:
    """When the middleware received the frame (system clock, ns); now when the rmw does not say."""
    return info.get('received_timestamp') or time.time_ns()


def matched_publishers(node: ManagedNode, subscription, topic: str) -> int:
    """Publishers matched with `subscription` (QoS-compatible); on Humble, publishers on the topic."""
    if hasattr(subscription, 'get_publisher_count'):  # newer than Humble: Subscription.get_publisher_count (Iron+)
        return subscription.get_publisher_count()
    return node.count_publishers(topic)


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
