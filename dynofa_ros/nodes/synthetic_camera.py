"""A camera stand-in for demos and tests: publishes Fashion-MNIST test images (or a pattern) at a rate.

Images are upscaled and coloured so every raw encoding and the compressed transport can be exercised;
the true class is written into header.frame_id as "<frame_id>/<index>:<class>" only when
`label_in_frame_id` is set, which lets tests check accuracy end to end.
"""
from __future__ import annotations

import numpy as np
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

from dynofa_ros.nodes.image_conversion import array_to_image
from dynofa_ros.nodes.lifecycle import run_node
from dynofa_ros.nodes.parameters import describe

# transport parameter -> what is published: raw Image, or CompressedImage in that format
TRANSPORTS = {'raw': 'raw', 'jpeg': 'jpeg', 'png': 'png', 'compressed': 'jpeg'}
RGB_ENCODINGS = {'rgb8': [0, 1, 2], 'bgr8': [2, 1, 0], 'rgba8': [0, 1, 2, 0], 'bgra8': [2, 1, 0, 0]}


def load_frames(source: str, count: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` frames of size x size x 3 uint8 plus their class labels (-1 for the pattern)."""
    if source == 'fashion_mnist':
        import torch
        import torch.nn.functional as F

        from dynofa_ros.datasets import load_fmnist
        images, labels = load_fmnist('test')
        images = images[:count].float().view(-1, 1, 28, 28)
        big = F.interpolate(images, size=(size, size), mode='bilinear', align_corners=False)
        frames = big.clamp(0, 255).to(torch.uint8).squeeze(1).numpy()
        return np.repeat(frames[..., None], 3, axis=-1), labels[:count].numpy().astype(np.int64)
    ys, xs = np.mgrid[0:size, 0:size]
    frames = [np.stack([(xs + 8 * i) % 256, (ys * 2) % 256, (xs + ys + i) % 256], -1).astype(np.uint8)
              for i in range(count)]
    return np.stack(frames), np.full(count, -1, dtype=np.int64)


class SyntheticCamera(Node):
    def __init__(self) -> None:
        super().__init__('synthetic_camera')
        self.rate_hz = self._param('rate_hz', 10.0, 'Publishing rate, frames per second.')
        self.width = self._param('size', 224, 'Square image side in pixels.')
        self.encoding = self._param('encoding', 'rgb8', 'rgb8, bgr8, rgba8, bgra8, mono8 or mono16.')
        transport = self._param('transport', 'raw', "raw (sensor_msgs/Image on 'image'), or jpeg, png or "
                                "compressed (= jpeg, as image_transport) as CompressedImage on "
                                "'<image>/compressed', which follows a remap of 'image'.")
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}, got '{transport}'")
        self.transport = TRANSPORTS[transport]
        self.source = self._param('source', 'fashion_mnist', 'fashion_mnist or pattern.')
        self.count = self._param('count', 64, 'Number of distinct frames cycled through.')
        self.frame_id = self._param('frame_id', 'camera', 'header.frame_id of published images.')
        self.max_frames = self._param('max_frames', 0, 'Stop publishing after this many frames (0: never).')
        self.label_in_frame_id = self._param('label_in_frame_id', False,
                                             'Append "/<index>:<class>" to frame_id (tests).')
        reliable = self._param('reliable', True, 'Reliable QoS like most camera drivers (else best effort).')
        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE if reliable
                         else ReliabilityPolicy.BEST_EFFORT)
        self.frames, self.labels = load_frames(self.source, self.count, self.width)
        # like image_transport: the compressed topic is the resolved (remapped) image topic + /compressed
        topic = self.resolve_topic_name('image')
        if self.transport == 'raw':
            self.publisher = self.create_publisher(Image, topic, qos)
        else:
            topic += '/compressed'
            self.publisher = self.create_publisher(CompressedImage, topic, qos)
        self.sent = 0
        self.timer = self.create_timer(1.0 / self.rate_hz, self._publish)
        self.get_logger().info(f'publishing {self.source} {self.width}x{self.width} {self.encoding}/'
                               f'{self.transport} on {topic} at {self.rate_hz} Hz')

    def _param(self, name: str, default, description: str):
        return self.declare_parameter(name, default, describe(description)).value

    def _frame_pixels(self, index: int) -> np.ndarray:
        rgb = self.frames[index]
        if self.encoding in RGB_ENCODINGS:
            channels = rgb[..., RGB_ENCODINGS[self.encoding]].copy()
            if self.encoding.endswith('a8'):
                channels[..., 3] = 255
            return channels
        mono = rgb[..., :1]
        if self.encoding == 'mono16':
            return mono.astype(np.uint16) * 257
        return mono

    def _publish(self) -> None:
        if self.max_frames and self.sent >= self.max_frames:
            return
        index = self.sent % len(self.frames)
        pixels = self._frame_pixels(index)
        stamp = self.get_clock().now().to_msg()
        frame_id = self.frame_id
        if self.label_in_frame_id:
            frame_id = f'{self.frame_id}/{self.sent}:{int(self.labels[index])}'
        if self.transport == 'raw':
            msg = array_to_image(pixels, self.encoding)
        else:
            msg = CompressedImage(format=f'{self.encoding}; {self.transport} compressed {self.encoding}',
                                  data=encode_compressed(pixels, self.encoding, self.transport))
        msg.header.stamp = stamp
        msg.header.frame_id = frame_id
        self.publisher.publish(msg)
        self.sent += 1


def encode_compressed(pixels: np.ndarray, encoding: str, fmt: str) -> bytes:
    import cv2
    bgr = pixels if pixels.shape[2] == 1 else pixels[..., [2, 1, 0]] if encoding.startswith('rgb') \
        else pixels[..., :3]
    ok, blob = cv2.imencode('.jpg' if fmt == 'jpeg' else '.png', np.ascontiguousarray(bgr[..., :3]))
    if not ok:
        raise RuntimeError(f'could not encode {fmt}')
    return blob.tobytes()


def main(args=None) -> None:
    run_node(SyntheticCamera, 'synthetic_camera', args)
