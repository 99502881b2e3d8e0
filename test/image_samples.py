"""Image bytes for input-safety tests and bench/bench_image_limits.py: PNG and JPEG headers built with
struct/zlib (a valid header declaring any size in a few hundred bytes) and other formats' magic bytes."""
from __future__ import annotations

import struct
import zlib

import numpy as np

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack('>I', len(payload)) + kind + payload + struct.pack('>I', zlib.crc32(kind + payload))


def png_bomb(width: int, height: int, colour_type: int = 0, bit_depth: int = 8, idat_rows: int = 16,
             filler_bytes: int = 0) -> bytes:
    """A valid PNG header declaring width x height, with an IDAT holding only the first `idat_rows` rows
    (zeros), plus `filler_bytes` of incompressible IDAT data to reach a real bomb's size on the wire."""
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour_type]
    row = b'\0' * (1 + width * channels * bit_depth // 8)  # filter byte + pixels
    ihdr = struct.pack('>IIBBBBB', width, height, bit_depth, colour_type, 0, 0, 0)
    filler = np.random.default_rng(0).integers(0, 256, filler_bytes, dtype=np.uint8).tobytes()
    return PNG_SIGNATURE + png_chunk(b'IHDR', ihdr) + png_chunk(b'IDAT', zlib.compress(row * idat_rows, 9)) \
        + (png_chunk(b'IDAT', filler) if filler else b'') + png_chunk(b'IEND', b'')


def jpeg_header(width: int, height: int, precision: int = 8, components: int = 3, sof: int = 0xC0) -> bytes:
    """SOI, an APP0 (JFIF) segment and a SOF declaring the given size; no scan data follows."""
    app0 = b'\xff\xe0' + struct.pack('>H', 16) + b'JFIF\0\x01\x01\0\0\x01\0\x01\0\0'
    body = struct.pack('>BHHB', precision, height, width, components) + b'\x01\x11\x00' * components
    return b'\xff\xd8' + app0 + bytes([0xFF, sof]) + struct.pack('>H', 2 + len(body)) + body + b'\xff\xd9'


def tiff_float(width: int = 28, height: int = 28) -> bytes:
    """Little-endian TIFF magic, a header offset and float32 pixels, like a depth or HDR export."""
    pixels = np.linspace(-1.0, 1.0, width * height, dtype='<f4').tobytes()
    return b'II*\x00' + struct.pack('<I', 8 + len(pixels)) + pixels + b'\0' * 64


def pfm(width: int = 28, height: int = 28) -> bytes:
    """A grey PFM (portable float map): text header, then float32 rows."""
    pixels = np.linspace(0.0, 1.0, width * height, dtype='<f4').tobytes()
    return f'Pf\n{width} {height}\n-1.0\n'.encode() + pixels


OTHER_FORMATS = {'TIFF': tiff_float(), 'PFM': pfm(), 'WebP': b'RIFF\x24\0\0\0WEBPVP8 ' + b'\0' * 32,
                 'BMP': b'BM' + b'\0' * 64}


def encode_png(pixels: np.ndarray) -> bytes:
    """Real PNG bytes (OpenCV) of HxW or HxWxC (RGB order) uint8 or uint16 pixels."""
    import cv2
    if pixels.ndim == 3 and pixels.shape[2] in (3, 4):
        pixels = pixels[..., [2, 1, 0, 3][:pixels.shape[2]]]  # OpenCV writes BGR(A)
    ok, blob = cv2.imencode('.png', np.ascontiguousarray(pixels))
    assert ok
    return blob.tobytes()
