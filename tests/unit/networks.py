"""Tiny schemas, rows and network parameters shared by the network's unit tests."""

import numpy as np
import pandas as pd

from mlcycle.ingest.data import Schema
from mlcycle.models.network import NetworkParams

REG = Schema(target="y", task="regression", numeric=["x", "z"], categorical=["c"])
BIN = Schema(
    target="y", task="classification", numeric=["x", "z"], categorical=["c"], classes=["no", "yes"]
)
MULTI = Schema(
    target="y", task="classification", numeric=["x", "z"], categorical=["c"], classes=[0, 1, 2]
)
TINY = NetworkParams(hidden_units=(8,), epochs=3, batch_size=16, patience=0, seed=3)


def rows(n=80, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x, z = rng.normal(size=n), rng.normal(5, 2, size=n)
    c = rng.choice(["a", "b", "c"], n).astype(object)
    frame = pd.DataFrame({"x": x, "z": z, "c": c, "y": 20_000 + 3_000 * x + 500 * (c == "a")})
    frame.loc[::7, "z"] = np.nan
    frame.loc[::9, "c"] = None
    return frame


def labelled(schema, n=80, seed=0) -> pd.DataFrame:
    frame = rows(n, seed)
    if schema.classes == ["no", "yes"]:
        frame["y"] = np.where(frame["x"] > 0, "yes", "no")
    else:
        frame["y"] = np.digitize(frame["x"], [-0.5, 0.5])
    return frame
