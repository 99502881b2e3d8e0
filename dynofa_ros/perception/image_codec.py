"""Decode camera images (sensor_msgs/Image and CompressedImage fields) into 8-bit numpy arrays.

Works on plain fields so it needs no ROS and no cv_bridge; every malformed input raises `ImageDecodeError`
with a reason the node can count and log (input strings quoted through `dynofa_ros.text.clip`).

Nothing is decoded before it is known to be safe and meaningful, in O(1) bytes: raw fields are checked
against `max_pixels` and each other; compressed data is identified by its magic bytes, its PNG IHDR or
JPEG SOF header is read (size, bit depth, channels) and checked against `max_pixels` and against what the
`format` string says, so a decompression bomb or a float TIFF labelled `png` is rejected without
allocating an image. Depth data (16UC1, 32FC1) is not intensity and is rejected; 16-bit intensity is
scaled to the model's 8-bit range.
"""
from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from dynofa_ros.text import clip

try:  # OpenCV decodes JPEG/PNG fastest; Pillow is the fallback.
    import cv2
except ImportError:  # pragma: no cover - depends on the machine
    cv2 = None


class ImageDecodeError(ValueError):
    """An image that cannot be served; the message says why."""


DEFAULT_MAX_PIXELS = 4096 * 4096  # width*height decoded at most (the node's `max_pixels` parameter)
MAX_BYTES_PER_PIXEL = 8  # 16-bit RGBA, the largest PNG pixel; bounds compressed data by max_pixels
COMPRESSED_SLACK_BYTES = 2**20  # metadata (EXIF, ICC) and a store-only PNG's overhead
MAX_JPEG_SEGMENTS = 256  # markers walked to find the SOF; real files have a handful

# encoding -> (channels, numpy dtype, channel order to reach RGB)
_RAW_ENCODINGS: dict[str, tuple[int, str, tuple[int, ...] | None]] = {
    'rgb8': (3, 'u1', None),
    'bgr8': (3, 'u1', (2, 1, 0)),
    'rgba8': (4, 'u1', (0, 1, 2)),
    'bgra8': (4, 'u1', (2, 1, 0)),
    'mono8': (1, 'u1', None),
    '8UC1': (1, 'u1', None),
    'mono16': (1, 'u2', None),
}
SUPPORTED_ENCODINGS = tuple(_RAW_ENCODINGS)
_DEPTH_ENCODING = re.compile(r'(16U|16S|32S|32F|64F)C1')  # distances, disparities: not intensity


def scale_to_8bit(pixels: np.ndarray) -> np.ndarray:
    """16-bit intensity to 8 bits, rounded (v * 257 -> v), the model's input range."""
    return ((pixels.astype(np.uint32) + 128) // 257).astype(np.uint8)


def _reject_depth(encoding: str, where: str) -> None:
    if _DEPTH_ENCODING.fullmatch(encoding):
        raise ImageDecodeError(f"depth {where} '{encoding}' is not intensity: send mono8, mono16 or colour")


# ---- raw sensor_msgs/Image ------------------------------------------------------------------------
def check_raw(encoding: str, height: int, width: int, step: int, data_size: int,
              max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """O(1) validation of raw image fields, cheap enough for the receiving callback."""
    if encoding not in _RAW_ENCODINGS:
        _reject_depth(encoding, 'encoding')
        raise ImageDecodeError(f"unsupported encoding '{clip(encoding)}' "
                               f"(supported: {', '.join(SUPPORTED_ENCODINGS)})")
    if height <= 0 or width <= 0:
        raise ImageDecodeError(f'zero-sized image {width}x{height}')
    if width * height > max_pixels:
        raise ImageDecodeError(f'oversized image {width}x{height} = {width * height} pixels '
                               f'> max_pixels {max_pixels}')
    channels, kind, _ = _RAW_ENCODINGS[encoding]
    row_bytes = width * channels * np.dtype(kind).itemsize
    if step < row_bytes:
        raise ImageDecodeError(f'step {step} < width*channels*bytes {row_bytes} for {encoding}')
    if data_size != step * height:
        raise ImageDecodeError(f'data has {data_size} bytes, expected step*height = {step * height}')


def decode_raw(encoding: str, height: int, width: int, step: int, is_bigendian: bool,
               data: bytes | bytearray | memoryview | np.ndarray, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Return an HxWx3 (colour) or HxWx1 (mono) uint8 array; mono16 is scaled to 8 bits."""
    buf = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data.view(np.uint8)
    check_raw(encoding, height, width, step, buf.size, max_pixels)
    channels, kind, order = _RAW_ENCODINGS[encoding]
    item = np.dtype(kind).itemsize
    rows = buf[:step * height].reshape(height, step)[:, :width * channels * item]
    dtype = np.dtype(kind).newbyteorder('>' if is_bigendian else '<') if item > 1 else np.dtype(kind)
    pixels = np.ascontiguousarray(rows).view(dtype).reshape(height, width, channels)
    if item > 1:
        pixels = scale_to_8bit(pixels)
    if order is not None:
        pixels = pixels[..., list(order)]
    return np.ascontiguousarray(pixels)


# ---- compressed headers ---------------------------------------------------------------------------
@dataclass(frozen=True)
class CompressedInfo:
    """What a compressed frame's header declares, read before decoding."""
    codec: str  # 'png' or 'jpeg'
    width: int
    height: int
    bit_depth: int  # per channel after decoding: 8 or 16
    channels: int  # 1 grey, 2 grey+alpha, 3 colour, 4 colour+alpha

    def describe(self) -> str:
        kind = {1: 'grey', 2: 'grey+alpha', 3: 'colour', 4: 'colour+alpha'}[self.channels]
        return f"{'an' if self.bit_depth == 8 else 'a'} {self.bit_depth}-bit {kind} {self.codec.upper()}"


_MAGIC = ((b'\x89PNG\r\n\x1a\n', 'png'), (b'\xff\xd8\xff', 'jpeg'), (b'II*\x00', 'TIFF'),
          (b'MM\x00*', 'TIFF'), (b'PF', 'PFM'), (b'Pf', 'PFM'), (b'BM', 'BMP'), (b'GIF8', 'GIF'),
          (b'\x00\x00\x00\x0cjP  ', 'JPEG 2000'), (b'\xffO\xffQ', 'JPEG 2000'), (b'v/1\x01', 'OpenEXR'),
          (b'#?RADIANCE', 'Radiance HDR'), (b'#?RGBE', 'Radiance HDR'), (b'qoif', 'QOI'))


def sniff(head: bytes) -> str:
    """The container format named by the first bytes: 'png', 'jpeg', another name, or 'unknown'."""
    if head[:4] == b'RIFF' and head[8:12] == b'WEBP':
        return 'WebP'
    if head[4:8] == b'ftyp':
        return 'HEIF/AVIF'
    if len(head) > 2 and head[:1] == b'P' and head[1:2] in b'1234567' and head[2:3].isspace():
        return 'PNM'
    return next((name for magic, name in _MAGIC if head.startswith(magic)), 'unknown')


# PNG colour type -> (channels after decoding, allowed bit depths)
_PNG_COLOUR = {0: (1, (1, 2, 4, 8, 16)), 2: (3, (8, 16)), 3: (3, (1, 2, 4, 8)), 4: (2, (8, 16)),
               6: (4, (8, 16))}


def _png_header(data: memoryview) -> CompressedInfo:
    """Size, bit depth and channels from the IHDR chunk, which the PNG standard puts first."""
    chunk = data[8:33].tobytes()
    if len(chunk) < 25 or chunk[4:8] != b'IHDR' or struct.unpack('>I', chunk[:4])[0] != 13:
        raise ImageDecodeError('corrupt or undecodable PNG: no IHDR chunk first')
    if zlib.crc32(chunk[4:21]) != struct.unpack('>I', chunk[21:25])[0]:
        raise ImageDecodeError('corrupt or undecodable PNG: IHDR checksum mismatch')
    width, height, depth, colour = struct.unpack('>IIBB', chunk[8:18])
    if colour not in _PNG_COLOUR or depth not in _PNG_COLOUR[colour][1]:
        raise ImageDecodeError(f'corrupt or undecodable PNG: bit depth {depth} with colour type {colour}')
    return CompressedInfo('png', width, height, 16 if depth == 16 else 8, _PNG_COLOUR[colour][0])


_SOF_SUPPORTED = (0xC0, 0xC1, 0xC2)  # baseline, extended sequential, progressive Huffman
_SOF_OTHER = (0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF)  # lossless, hierarchical, arithmetic
_STANDALONE = (0x01, *range(0xD0, 0xD8))  # TEM, RSTn: no length field


def _jpeg_header(data: memoryview) -> CompressedInfo:
    """Size, precision and components from the SOF segment, walking (not reading) the segments before it."""
    at = 2
    for _ in range(MAX_JPEG_SEGMENTS):
        head = data[at:at + 10].tobytes()
        if len(head) < 4 or head[0] != 0xFF:
            raise ImageDecodeError(f'corrupt or undecodable JPEG: no marker at byte {at}')
        marker = head[1]
        if marker == 0xFF or marker in _STANDALONE:  # fill byte or a marker without a length
            at += 1 if marker == 0xFF else 2
            continue
        if marker in _SOF_SUPPORTED:
            if len(head) < 10:
                raise ImageDecodeError('corrupt or undecodable JPEG: truncated SOF header')
            precision, height, width, components = struct.unpack('>BHHB', head[4:10])
            return _jpeg_info(precision, width, height, components)
        if marker in _SOF_OTHER:
            raise ImageDecodeError(f'unsupported JPEG coding process (SOF{marker - 0xC0}): baseline or progressive')
        if marker in (0xD9, 0xDA):
            raise ImageDecodeError('corrupt or undecodable JPEG: image data before any SOF header')
        at += 2 + struct.unpack('>H', head[2:4])[0]
    raise ImageDecodeError(f'corrupt or undecodable JPEG: no SOF header in the first {MAX_JPEG_SEGMENTS} segments')


def _jpeg_info(precision: int, width: int, height: int, components: int) -> CompressedInfo:
    if precision != 8:
        raise ImageDecodeError(f'unsupported {precision}-bit JPEG: only 8-bit JPEG is intensity the model reads')
    if components not in (1, 3):
        raise ImageDecodeError(f'unsupported JPEG with {components} components (CMYK?): grey or colour only')
    return CompressedInfo('jpeg', width, height, 8, components)


# ---- the format string ----------------------------------------------------------------------------
# target encoding in "<source>; <codec> compressed <target>" -> (channels, bit depth)
_TARGETS = {'mono8': (1, 8), 'mono16': (1, 16), 'bgr8': (3, 8), 'rgb8': (3, 8), 'bgr16': (3, 16),
            'rgb16': (3, 16), 'bgra8': (4, 8), 'rgba8': (4, 8), 'bgra16': (4, 16), 'rgba16': (4, 16)}


@dataclass(frozen=True)
class FormatSpec:
    """What a CompressedImage `format` says: "png", "jpeg", or image_transport's
    "<source encoding>; <codec> compressed <target encoding>"."""
    codec: str | None  # None: not named (an empty format), so the magic bytes decide
    source: str | None
    target: str | None


def parse_format(fmt: str) -> FormatSpec:
    """Codec, source and target encodings named by `fmt`; an ambiguous or depth format is rejected."""
    if len(fmt) > 256:
        raise ImageDecodeError(f"unsupported compressed format '{clip(fmt)}' ({len(fmt)} characters)")
    source, _, rest = fmt.rpartition(';')
    words = rest.lower().split()
    if 'compresseddepth' in fmt.lower():
        raise ImageDecodeError(f"depth format '{clip(fmt)}' is not intensity (compressedDepth)")
    codecs = {'jpeg' if word in ('jpeg', 'jpg') else word for word in words if word in ('jpeg', 'jpg', 'png')}
    if len(codecs) != 1 and fmt.strip():
        raise ImageDecodeError(f"unsupported compressed format '{clip(fmt)}' (jpeg or png)")
    target = words[words.index('compressed') + 1] if 'compressed' in words[:-1] else None
    return FormatSpec(next(iter(codecs), None), source.strip() or None, target)


def _check_format(spec: FormatSpec, info: CompressedInfo, fmt: str) -> None:
    """The format string must agree with the header: codec, and the target's channels and bit depth."""
    if spec.source:
        _reject_depth(spec.source.upper(), 'source encoding')
    if spec.target is None:
        return
    _reject_depth(spec.target.upper(), 'target encoding')
    if spec.target not in _TARGETS:
        raise ImageDecodeError(f"unsupported compressed format '{clip(fmt)}' (target "
                               f"{', '.join(_TARGETS)})")
    if _TARGETS[spec.target] != (info.channels, info.bit_depth):
        raise ImageDecodeError(f"format says {clip(spec.target)} but the data is {info.describe()}")


# ---- compressed frames ----------------------------------------------------------------------------
def check_compressed(fmt: str, data: bytes | bytearray | memoryview, max_pixels: int = DEFAULT_MAX_PIXELS
                     ) -> CompressedInfo:
    """O(1) checks before anything is decoded: byte size, magic bytes, header, format string, max_pixels."""
    spec = parse_format(fmt)
    view = memoryview(data).cast('B') if not isinstance(data, np.ndarray) else memoryview(data.view(np.uint8))
    if view.nbytes == 0:
        raise ImageDecodeError('empty compressed image')
    limit = MAX_BYTES_PER_PIXEL * max_pixels + COMPRESSED_SLACK_BYTES
    if view.nbytes > limit:
        raise ImageDecodeError(f'oversized compressed image: {view.nbytes} bytes > {limit} '
                               f'for max_pixels {max_pixels}')
    found = sniff(view[:16].tobytes())
    if found not in ('png', 'jpeg') or (spec.codec and found != spec.codec):
        said = f"format says {spec.codec}" if spec.codec else 'format is empty'
        raise ImageDecodeError(f'{said} but the data is {found} (jpeg or png only)')
    info = _png_header(view) if found == 'png' else _jpeg_header(view)
    if info.width == 0 or info.height == 0:
        raise ImageDecodeError(f'zero-sized image {info.width}x{info.height} in the {found.upper()} header')
    if info.width * info.height > max_pixels:
        raise ImageDecodeError(f'oversized {found.upper()} {info.width}x{info.height} = '
                               f'{info.width * info.height} pixels > max_pixels {max_pixels}')
    _check_format(spec, info, fmt)
    return info


def decode_compressed(fmt: str, data: bytes | bytearray | memoryview,
                      max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode JPEG/PNG bytes to HxWx3 RGB uint8 (HxWx1 for grey ones), after `check_compressed`."""
    info = check_compressed(fmt, data, max_pixels)
    raw = np.frombuffer(data, dtype=np.uint8)
    pixels = _decode_cv2(raw, info) if cv2 is not None else _decode_pillow(raw.tobytes(), info)
    corrupt = f'corrupt or undecodable {info.codec.upper()}'
    if pixels.shape[:2] != (info.height, info.width):
        raise ImageDecodeError(f'{corrupt}: decoded {pixels.shape[1]}x{pixels.shape[0]}, '
                               f'header says {info.width}x{info.height}')
    if pixels.dtype == np.uint16:
        pixels = scale_to_8bit(pixels)
    elif pixels.dtype != np.uint8:
        raise ImageDecodeError(f'{corrupt}: decoded {pixels.dtype} pixels')
    return np.ascontiguousarray(pixels[..., None] if pixels.ndim == 2 else pixels)


def _decode_cv2(raw: np.ndarray, info: CompressedInfo) -> np.ndarray:
    """Grey (alpha dropped) or RGB (alpha dropped), at the file's bit depth."""
    grey = info.channels <= 2
    flags = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_IGNORE_ORIENTATION  # camera frames are taken as sent
    flags |= cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR
    image = cv2.imdecode(raw, flags)
    if image is None:
        raise ImageDecodeError(f'corrupt or undecodable compressed image ({info.describe()})')
    return image if grey else cv2.cvtColor(image, cv2.COLOR_BGR2RGB, dst=image)  # in place, no copy


def _decode_pillow(blob: bytes, info: CompressedInfo) -> np.ndarray:
    import io

    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(io.BytesIO(blob)) as img:
            img.load()
            if info.channels > 2:
                return np.asarray(img.convert('RGB'))
            if img.mode.startswith('I'):  # 16-bit grey: 'I;16', 'I;16B' or 'I' by Pillow version
                return np.asarray(img).astype(np.uint16)
            return np.asarray(img.convert('L'))
    except (UnidentifiedImageError, OSError) as exc:
        raise ImageDecodeError(f'corrupt or undecodable compressed image ({info.describe()}): '
                               f'{clip(exc, 120)}') from exc
