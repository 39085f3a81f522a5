"""Logits to probabilities to labels: the one rule that written labels, drift counts and every metric
share."""

from __future__ import annotations

import numpy as np


def is_positive(prob_positive: np.ndarray) -> np.ndarray:
    """The label rule that written labels, drift counts and every metric share: positive from 0.5 up."""
    return np.asarray(prob_positive) >= 0.5


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Probabilities in float64 (then rounded once), so they sum to 1 and are reproducible."""
    scaled = logits.astype(np.float64) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=1, keepdims=True)
