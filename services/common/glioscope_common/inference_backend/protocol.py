"""The one thing a backend does: a batch of patches in, the model's logits out."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class InferenceBackend(Protocol):
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """[N, C, P, P, P] float32 -> [N, L, P, P, P] float32 logits."""
        ...
