"""A trained network as its Dense layers' arrays, computed in NumPy: how a loaded network
predicts without TensorFlow (`mlcycle.models.network.NetworkModel` saves and loads it as
`dense_stack.npz` beside the Keras model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


class DenseStack:
    """The trained network as its layers' arrays: Dense layers, each x @ kernel + bias then
    its activation (Dropout does nothing at inference). NumPy computes it from the float32
    weights in float64: a row's answer then does not depend on how many rows share its
    batch (BLAS sums a float32 product in an order that does, ~3e-8 apart between a pandas
    chunk and a Spark partition), and stays within 2e-6 of Keras' float32
    (tests/unit/models/test_network.py). Loading a network for prediction (score, monitor,
    `mlflow models serve`) so imports no TensorFlow."""

    ACTIVATIONS = ("relu", "linear", "sigmoid", "softmax")

    def __init__(self, kernels, biases, activations):
        self.kernels = [np.asarray(k, dtype="float32") for k in kernels]
        self.biases = [np.asarray(b, dtype="float32") for b in biases]
        self._wide = [
            (k.astype("float64"), b.astype("float64"))
            for k, b in zip(self.kernels, self.biases, strict=True)
        ]
        self.activations = list(activations)

    @classmethod
    def of(cls, network) -> DenseStack | None:
        """The stack of a Keras model, or None when it has a layer the stack cannot compute."""
        kernels, biases, activations = [], [], []
        for layer in network.layers:
            kind = type(layer).__name__
            if kind in ("InputLayer", "Dropout"):
                continue
            config = layer.get_config()
            if kind != "Dense" or config["activation"] not in cls.ACTIVATIONS:
                return None
            kernel, *bias = layer.get_weights()
            kernels.append(kernel)
            biases.append(bias[0] if bias else np.zeros(kernel.shape[1], dtype="float32"))
            activations.append(config["activation"])
        return cls(kernels, biases, activations) if kernels else None

    def save(self, file: Path) -> list[str]:
        arrays = {f"kernel_{i}": k for i, k in enumerate(self.kernels)}
        arrays |= {f"bias_{i}": b for i, b in enumerate(self.biases)}
        np.savez(file, **arrays)
        return self.activations

    @classmethod
    def load(cls, file: Path, activations: list[str]) -> DenseStack:
        with np.load(file, allow_pickle=False) as arrays:
            n = len(activations)
            return cls(
                [arrays[f"kernel_{i}"] for i in range(n)],
                [arrays[f"bias_{i}"] for i in range(n)],
                activations,
            )

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = np.asarray(x, dtype="float64")
        for (kernel, bias), activation in zip(self._wide, self.activations, strict=True):
            out = out @ kernel + bias
            if activation == "relu":
                np.maximum(out, 0.0, out=out)
            elif activation == "sigmoid":
                out = _sigmoid(out)
            elif activation == "softmax":
                out = np.exp(out - out.max(axis=1, keepdims=True))
                out /= out.sum(axis=1, keepdims=True)
        return out


def _sigmoid(z: np.ndarray) -> np.ndarray:
    # Both halves without overflow: exp of a non-positive number only.
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
