"""`dynofa calibrate`: per-sub-network BatchNorm statistics from the deployment's own images.

An OFA supernet's BN running statistics belong to the largest sub-network; every smaller one needs its
own, re-estimated on a few hundred images (OFA and Dynamic-OFA use 2,000 ImageNet training images).
Robots rarely carry ImageNet, so the images come from any folder (JPEG/PNG) or a rosbag's image topic:
statistics estimated on the camera's own images also adapt the network to that camera's colour and
exposure (test-time BN adaptation), which the docs weigh against ImageNet's (docs/jetson_procedure.md).
Only BN buffers change; the weights stay the supernet's. Every image passes the same header and size
checks as the perception node (`perception/image_codec.py`), and counts and sizes are bounded.
"""
from __future__ import annotations

import os
import random
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from dynofa_ros.engine.bn_stats import bn_state, bn_stats_filename, recalibrate_bn, save_bn_stats
from dynofa_ros.operating_points import (OperatingPointTable, load_table, resolve_checkpoint, resolve_package_path,
                                         save_table)
from dynofa_ros.perception.image_codec import ImageDecodeError, decode_compressed, decode_raw
from dynofa_ros.perception.preprocess import Preprocessor

IMAGE_SUFFIXES = {".jpg": "jpeg", ".jpeg": "jpeg", ".png": "png"}
MAX_FILE_BYTES = 64 * 2**20
MAX_IMAGES = 10_000


class CalibrationError(ValueError):
    """No usable calibration images, or a table/checkpoint that cannot be calibrated; says why."""


def folder_images(folder: str | os.PathLike, limit: int, seed: int = 0) -> Iterator[np.ndarray]:
    """Up to `limit` decoded RGB images from a folder tree (JPEG/PNG; others and bad files skipped)."""
    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise CalibrationError(f"{folder}: no .jpg/.jpeg/.png images")
    random.Random(seed).shuffle(files)
    for path in files[:limit]:
        if path.stat().st_size > MAX_FILE_BYTES:
            continue
        try:
            yield decode_compressed(IMAGE_SUFFIXES[path.suffix.lower()], path.read_bytes())
        except ImageDecodeError:
            continue


def bag_images(bag_path: str | os.PathLike, topic: str, limit: int) -> Iterator[np.ndarray]:
    """Up to `limit` decoded images of a bag topic (sensor_msgs/Image or CompressedImage), evenly spread."""
    from rosbags.typesys import Stores, get_typestore

    from dynofa_ros.bags import Bag
    store = get_typestore(Stores.ROS2_HUMBLE)
    with Bag(bag_path) as bag:
        if topic not in bag.topics:
            raise CalibrationError(f"{bag_path}: no topic {topic!r}; it has {sorted(bag.topics)[:20]}")
        kind = bag.topics[topic].msgtype
        if kind not in ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"):
            raise CalibrationError(f"{bag_path}: topic {topic!r} holds {kind}, not images")
        every = max(1, bag.topics[topic].count // max(1, limit))
        for i, (_, _, raw) in enumerate(bag.messages([topic])):
            if i % every or i // every >= limit:
                continue
            msg = store.deserialize_cdr(raw, kind)
            try:
                if kind.endswith("CompressedImage"):
                    yield decode_compressed(msg.format, msg.data)
                else:
                    yield decode_raw(msg.encoding, msg.height, msg.width, msg.step, bool(msg.is_bigendian), msg.data)
            except ImageDecodeError:
                continue


def calibrate_table(table_path: str | os.PathLike, images: list[np.ndarray], *, checkpoint: str | None = None,
                    out_table: str | os.PathLike | None = None, batch_size: int = 32,
                    source: str = "") -> OperatingPointTable:
    """Re-estimate every point's BN statistics on `images`, write them beside the output table and
    point the table at them. Returns the written table."""
    from dynofa_ros.supernet.checkpoint import load_table_supernet

    if not images:
        raise CalibrationError("no usable calibration images")
    table = load_table(table_path)
    out = Path(out_table or table_path)
    supernet, _ = load_table_supernet(checkpoint or resolve_checkpoint(table_path, table), table.supernet.family)
    info = table.supernet
    prep = Preprocessor(info.normalization.mean, info.normalization.std, info.in_channels, crop=info.crop)
    bn_dir = Path("bn") / out.stem
    points = []
    for point in table.points:
        subnet_id = point.id.split("@", 1)[0]
        module = supernet.extract(supernet.as_spec(subnet_id)).eval()
        batches = (torch.cat([prep(img, point.resolution) for img in images[i:i + batch_size]])
                   for i in range(0, len(images), batch_size))
        recalibrate_bn(module, batches)
        rel = bn_dir / bn_stats_filename(subnet_id)
        save_bn_stats(out.parent / rel, subnet_id, bn_state(module),
                      {"source": source, "images": len(images), "crop": info.crop})
        points.append(replace(point, bn_stats=str(rel)))
    if out.resolve().parent != Path(table_path).resolve().parent:  # keep the table's own paths valid there
        info = replace(info, checkpoint=str(checkpoint or resolve_checkpoint(table_path, table)),
                       labels_file=str(resolve_package_path(table_path, info.labels_file)) if info.labels_file else None)
    written = replace(table, supernet=info, points=tuple(points))
    save_table(written, out)
    return written


def load_images(images_dir: str | None, bag: str | None, topic: str | None, limit: int) -> tuple[list[np.ndarray], str]:
    """The calibration set from exactly one source, bounded by `limit` (and MAX_IMAGES)."""
    limit = max(1, min(limit, MAX_IMAGES))
    if bool(images_dir) == bool(bag):
        raise CalibrationError("give either --images DIR or --bag BAG --topic TOPIC")
    if bag and not topic:
        raise CalibrationError("--bag needs --topic (the image topic to calibrate on)")
    if images_dir:
        return list(folder_images(images_dir, limit)), f"images from {images_dir}"
    return list(bag_images(bag, topic, limit)), f"topic {topic} of bag {bag}"
