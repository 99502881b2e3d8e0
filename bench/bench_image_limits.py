#!/usr/bin/env python3
"""What rejecting decompression bombs from their header costs (issue 13 item 1), beside decoding first.

    source ws/env.sh && python bench/bench_image_limits.py [--rounds 30]

Writes bench/results/image_limits.json (+ .md). In one process, interleaved round by round (in a new
shuffled order each round):
- `decode_compressed` on the issue's bombs (PNG declaring 30000x30000: 875 KB grey, 2.6 MB RGB), which
  it rejects from the IHDR header: wall and thread-CPU time per call (CPU time leaves out the
  preemption a loaded machine adds), Python-traced peak memory (tracemalloc, which numpy and
  OpenCV's output arrays report to) and the process's peak-RSS growth over all those calls;
- the alternative a user would write, decode with OpenCV then check the size, on a bomb it can survive
  (8192x8192 grey, 67 MP > max_pixels): against the header check on that same bomb, as a ratio;
- a good 640x480 PNG and JPEG frame: the full checked decode against the same decode to RGB without
  checks, so the header check's overhead on every served frame is a ratio too.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from dynofa_ros.engine.timing import summarize
from dynofa_ros.perception.image_codec import DEFAULT_MAX_PIXELS, ImageDecodeError, decode_compressed

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / 'test'))
from image_samples import encode_png, png_bomb  # noqa: E402  (the same bombs the tests send)


def _checked(fmt: str, blob: bytes) -> Callable[[], None]:
    def call() -> None:
        try:
            decode_compressed(fmt, blob)
        except ImageDecodeError:
            pass
    return call


def _decode_then_check(blob: bytes) -> Callable[[], None]:
    raw = np.frombuffer(blob, np.uint8)

    def call() -> None:
        image = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED)
        assert image.shape[0] * image.shape[1] > DEFAULT_MAX_PIXELS  # rejected only now
    return call


def _bare_decode(blob: bytes) -> Callable[[], None]:
    """The same decode to RGB with no checks: what serving a frame cost before the header check."""
    raw = np.frombuffer(blob, np.uint8)

    def call() -> None:
        image = cv2.imdecode(raw, cv2.IMREAD_COLOR)
        cv2.cvtColor(image, cv2.COLOR_BGR2RGB, dst=image)
    return call


def _frame() -> np.ndarray:
    """A 640x480 RGB frame with edges and gradients (compresses like a camera image, not like zeros)."""
    y, x = np.mgrid[0:480, 0:640]
    base = ((x // 40 + y // 40) % 2 * 120 + x * 135 // 640).astype(np.uint8)
    noise = np.random.default_rng(0).integers(0, 24, (480, 640), dtype=np.uint8)
    return np.dstack([base + noise, base // 2 + noise, 255 - base])


def cases() -> dict[str, tuple[Callable[[], None], int]]:
    """name -> (call, bytes on the wire)."""
    grey = png_bomb(30000, 30000, filler_bytes=875_000)
    rgb = png_bomb(30000, 30000, colour_type=2, filler_bytes=2_600_000)
    mid = encode_png(np.zeros((8192, 8192), np.uint8))
    good_png = encode_png(_frame())
    good_jpeg = cv2.imencode('.jpg', _frame()[..., ::-1].copy(), [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    return {
        'reject_png_30000x30000_grey': (_checked('png', grey), len(grey)),
        'reject_png_30000x30000_rgb': (_checked('bgr8; png compressed bgr8', rgb), len(rgb)),
        'reject_png_8192x8192_grey': (_checked('png', mid), len(mid)),
        'decode_then_check_png_8192x8192_grey': (_decode_then_check(mid), len(mid)),
        'checked_decode_png_640x480': (_checked('rgb8; png compressed bgr8', good_png), len(good_png)),
        'bare_imdecode_png_640x480': (_bare_decode(good_png), len(good_png)),
        'checked_decode_jpeg_640x480': (_checked('rgb8; jpeg compressed bgr8', good_jpeg), len(good_jpeg)),
        'bare_imdecode_jpeg_640x480': (_bare_decode(good_jpeg), len(good_jpeg)),
    }


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def traced_peak(call: Callable[[], None]) -> int:
    tracemalloc.start()
    try:
        call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def measure(rounds: int) -> dict:
    table = cases()
    rejections = [name for name in table if name.startswith('reject_')]
    for call, _ in table.values():  # warm-up: imports, decoder set-up
        call()
    rss_before = peak_rss_mb()
    for _ in range(rounds):  # the bombs alone first: does the header check ever grow the process?
        for name in rejections:
            table[name][0]()
    rss_growth = peak_rss_mb() - rss_before
    wall: dict[str, list[float]] = {name: [] for name in table}
    cpu: dict[str, list[float]] = {name: [] for name in table}
    order = list(table)
    shuffle = np.random.default_rng(0).shuffle
    for _ in range(rounds):  # interleaved in a new order each round: load and cache state hit all alike
        shuffle(order)
        for name in order:
            t0, c0 = time.perf_counter(), time.thread_time()
            table[name][0]()
            wall[name].append((time.perf_counter() - t0) * 1e3)
            cpu[name].append((time.thread_time() - c0) * 1e3)
    results = {name: {'bytes': size, 'wall_ms': {**summarize(wall[name]), 'max': max(wall[name])},
                      'cpu_ms': {**summarize(cpu[name]), 'max': max(cpu[name])},
                      'traced_peak_bytes': traced_peak(call)} for name, (call, size) in table.items()}
    return {'rejection_peak_rss_growth_mb': rss_growth, 'cases': results}


def ratios(cases_: dict, clock: str) -> dict[str, float]:
    med = {name: entry[clock]['median'] for name, entry in cases_.items()}
    return {
        'decode_then_check_over_header_check_8192': med['decode_then_check_png_8192x8192_grey']
        / med['reject_png_8192x8192_grey'],
        'checked_over_bare_decode_png_640x480': med['checked_decode_png_640x480'] / med['bare_imdecode_png_640x480'],
        'checked_over_bare_decode_jpeg_640x480': med['checked_decode_jpeg_640x480']
        / med['bare_imdecode_jpeg_640x480'],
    }


def write_markdown(path: Path, report: dict) -> None:
    lines = [f"# Image limits ({report['rounds']} interleaved rounds, max_pixels {DEFAULT_MAX_PIXELS})", '',
             f"Peak RSS growth over {report['rounds']} rounds of rejecting every bomb: "
             f"{report['rejection_peak_rss_growth_mb']:.2f} MB", '',
             '| case | bytes | wall median / p95 / max ms | CPU median / max ms | traced peak |',
             '|---|---|---|---|---|']
    for name, e in report['cases'].items():
        w, c = e['wall_ms'], e['cpu_ms']
        lines.append(f"| {name} | {e['bytes']} | {w['median']:.3f} / {w['p95']:.3f} / {w['max']:.3f} "
                     f"| {c['median']:.3f} / {c['max']:.3f} | {e['traced_peak_bytes'] / 1024:.1f} KiB |")
    lines += ['', 'Ratios of medians (wall; CPU):', '',
              *(f"- {name}: {value:.2f}x; {report['ratios_cpu'][name]:.2f}x"
                for name, value in report['ratios_wall'].items()), '',
              f"Command: `{report['command']}`", '']
    path.write_text('\n'.join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--rounds', type=int, default=30)
    parser.add_argument('--out', type=Path, default=REPO / 'bench' / 'results' / 'image_limits.json')
    args = parser.parse_args()
    cv2.setNumThreads(1)
    report = {'rounds': args.rounds, **measure(args.rounds)}
    report['ratios_wall'] = ratios(report['cases'], 'wall_ms')
    report['ratios_cpu'] = ratios(report['cases'], 'cpu_ms')
    report.update(machine=platform.machine(), python=platform.python_version(), opencv=cv2.__version__,
                  command=f'python bench/bench_image_limits.py --rounds {args.rounds}')
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + '\n')
    write_markdown(args.out.with_suffix('.md'), report)
    print(args.out.with_suffix('.md').read_text())


if __name__ == '__main__':
    main()
