"""One frame through pre-processing, the active sub-network and top-k, with per-stage times.

The resolution is taken from the sub-network active when the frame starts; the model reports which
sub-network actually produced the logits, so a switch mid-frame is visible in the result, never mixed.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from dynofa_ros.perception.preprocess import Preprocessor


class SwitchableModel(Protocol):
    """What the perception pipeline needs from a model; the engine's SubnetPool implements it."""

    def subnet_ids(self) -> list[str]: ...

    def active_subnet_id(self) -> str: ...

    def input_resolution(self, subnet_id: str | None = None) -> int: ...

    def switch(self, subnet_id: str) -> None: ...

    def infer(self, batch: torch.Tensor) -> tuple[torch.Tensor, str]: ...


@dataclass(frozen=True)
class Classification:
    subnet_id: str
    class_ids: list[int]
    scores: list[float]
    labels: list[str]
    preprocess_ms: float
    inference_ms: float
    postprocess_ms: float


class Classifier:
    def __init__(self, model: SwitchableModel, preprocessor: Preprocessor, labels: Sequence[str],
                 top_k: int = 3) -> None:
        self.model = model
        self.preprocessor = preprocessor
        self.labels = list(labels)
        self.top_k = top_k

    def _sync(self) -> None:
        if self.preprocessor.device.type == 'cuda':  # time GPU work, not its launch
            torch.cuda.synchronize(self.preprocessor.device)

    @torch.inference_mode()
    def classify(self, image: np.ndarray) -> Classification:
        t0 = time.perf_counter()
        batch = self.preprocessor(image, self.model.input_resolution())
        self._sync()
        t1 = time.perf_counter()
        logits, subnet_id = self.model.infer(batch)
        self._sync()
        t2 = time.perf_counter()
        probs = torch.softmax(logits[0].float(), dim=0)
        k = min(self.top_k, probs.numel())
        scores, ids = torch.topk(probs, k)
        class_ids = ids.cpu().tolist()
        labels = [self.labels[i] if i < len(self.labels) else '' for i in class_ids]
        t3 = time.perf_counter()
        return Classification(subnet_id, class_ids, scores.cpu().tolist(), labels,
                              (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3)
