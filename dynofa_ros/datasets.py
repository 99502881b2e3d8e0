"""Fashion-MNIST from the Debian ``dataset-fashion-mnist`` IDX files (gzipped or not); no downloads."""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

FMNIST_DIR = Path(os.environ.get("DYNOFA_FMNIST_DIR", "/usr/share/datasets/fashion-mnist"))
FMNIST_MEAN = 0.2860
FMNIST_STD = 0.3530
FMNIST_LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                 "Bag", "Ankle boot"]


def _open(path: Path):
    for candidate in (path, path.with_name(path.name + ".gz")):
        if candidate.exists():
            return gzip.open(candidate, "rb") if candidate.suffix == ".gz" else open(candidate, "rb")
    raise FileNotFoundError(f"{path}[.gz] not found; install the Debian package dataset-fashion-mnist "
                            f"or set DYNOFA_FMNIST_DIR")


def read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file (magic: 0, 0, dtype 0x08 = uint8, ndim; big-endian dims)."""
    with _open(path) as fh:
        data = fh.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise ValueError(f"{path}: expected {int(np.prod(dims))} bytes of data, found {body.size}")
    return body.reshape(dims)


def load_fmnist(split: str = "train", root: Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(images uint8 [N, 1, 28, 28], labels int64 [N]) for split ``train`` or ``test``."""
    root = Path(root) if root is not None else FMNIST_DIR
    prefix = {"train": "train", "test": "t10k"}[split]
    images = read_idx(root / f"{prefix}-images-idx3-ubyte")
    labels = read_idx(root / f"{prefix}-labels-idx1-ubyte")
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


def preprocess(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """uint8 [N, C, H, W] -> normalised float at ``resolution`` (bilinear, antialiased when shrinking).

    The same transform is used for training, BN calibration and evaluation so recorded accuracies hold.
    """
    x = images.float().div_(255.0).sub_(FMNIST_MEAN).div_(FMNIST_STD)
    if x.shape[-1] != resolution or x.shape[-2] != resolution:
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False,
                          antialias=resolution < x.shape[-1])
    return x


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random 2-pixel-padded crop and horizontal flip on uint8 batches (cheap, on tensors)."""
    n, _, h, w = images.shape
    padded = F.pad(images, (2, 2, 2, 2))
    dx = torch.randint(0, 5, (n,), generator=generator)
    dy = torch.randint(0, 5, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h)[None, :])[:, None, :, None].expand(n, images.shape[1], h, w + 4)
    out = torch.gather(padded, 2, rows)
    cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, None, :].expand(n, images.shape[1], h, w)
    out = torch.gather(out, 3, cols)
    flip = torch.rand(n, generator=generator) < 0.5
    out[flip] = out[flip].flip(-1)
    return out
