"""A bag of networks against one: retrain's default network (scratch on current train,
its defaults) trained from 5 seeds on the same rows and averaged (`fit_bag`, what retrain
registers with `members=5`), beside the first network alone, the mean of the five scored
one by one, and a bag of 3; on the scenario bank of bench_quality.py, same leak-free
splits, scored on current_test (R², or weighted F1 for a classification).

    .venv/bin/python benchmarks/bench_bag.py [--only wage,small] [--seeds 42,7,2024]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.bench_quality import SEEDS, generated, wage, weather  # noqa: E402
from mlcycle.models.candidates import validation_slice  # noqa: E402
from mlcycle.models.network import NetworkModel, NetworkParams  # noqa: E402
from mlcycle.models.training import fit_bag  # noqa: E402
from mlcycle.monitoring.evaluate import score  # noqa: E402
from mlcycle.monitoring.metrics import PRIMARY  # noqa: E402
from mlcycle.steps.etl import EtlParams, prepare  # noqa: E402

MEMBERS = 5


def one_network(bag: NetworkModel, i: int) -> NetworkModel:
    """The bag's i-th network alone (0: the first, what `members=1` registers)."""
    network = bag.network if i == 0 else bag.extra_networks[i - 1]
    return NetworkModel(
        bag.schema, bag.params, bag.preprocessing, network, bag.target_mean, bag.target_scale
    )


def first_of(bag: NetworkModel, count: int) -> NetworkModel:
    """The bag of its first `count` networks."""
    out = one_network(bag, 0)
    out.extra_networks = bag.extra_networks[: count - 1]
    return out


def run(scenario, seed: int, folder: Path) -> dict[str, float]:
    ref, cur = folder / "old.csv", folder / "new.csv"
    scenario.reference.to_csv(ref, index=False)
    scenario.current.to_csv(cur, index=False)
    data = prepare(
        EtlParams(
            reference=str(ref),
            current=str(cur),
            target=scenario.target,
            drop_columns=scenario.drop,
            seed=seed,
        )
    )
    schema, splits = data.schema, data.splits
    key = f"current_test_{PRIMARY[schema.task]}"
    params = NetworkParams(seed=seed)
    # As retrain registers its kept candidate: current train less the slice, stopped on it.
    fit_rows, judge = validation_slice(splits.current_train, params)
    bag, _ = fit_bag(schema, params, fit_rows, members=MEMBERS, validation=judge)
    singles = [score(one_network(bag, i), schema, splits)[key] for i in range(MEMBERS)]
    return {
        "one": singles[0],
        "mean of 5 alone": float(np.mean(singles)),
        "bag of 3": score(first_of(bag, 3), schema, splits)[key],
        "bag of 5": score(bag, schema, splits)[key],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    parser.add_argument("--only", default="", help="comma-separated scenario names")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    seeds = [int(s) for s in args.seeds.split(",")]
    bank = generated() + [wage(), weather()]
    if args.only:
        bank = [s for s in bank if s.name in args.only.split(",")]
    folder = Path(tempfile.mkdtemp(prefix="bench_bag_"))
    gains, start = [], time.perf_counter()
    print(
        f"{'scenario':<13}{'seed':>6}{'one':>9}{'mean of 5 alone':>17}{'bag of 3':>10}"
        f"{'bag of 5':>10}{'gain':>9}"
    )
    for scenario in bank:
        for seed in seeds:
            began = time.perf_counter()
            f = run(scenario, seed, folder)
            gains.append(f["bag of 5"] - f["one"])
            print(
                f"{scenario.name:<13}{seed:>6}{f['one']:>9.4f}{f['mean of 5 alone']:>17.4f}"
                f"{f['bag of 3']:>10.4f}{f['bag of 5']:>10.4f}{gains[-1]:>+9.4f}"
                f"  ({time.perf_counter() - began:.0f} s)",
                flush=True,
            )
    g = np.asarray(gains)
    print(
        f"\nbag of 5 - one network over {len(g)} runs: median {np.median(g):+.4f}, "
        f"min {g.min():+.4f}, max {g.max():+.4f}, better in {(g > 0).sum()}, "
        f"worse in {(g < 0).sum()}; wall time {time.perf_counter() - start:.0f} s"
    )


if __name__ == "__main__":
    main()
