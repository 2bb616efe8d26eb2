"""How well main chooses among the candidates it trains, replayed on the stores that
`bench_quality.py --main` keeps: main's own rule (checked against the champion figure it
recorded), an equal blend of every candidate, the same rule judged on more rows, and the
ceiling of a choice that sees the test rows. Each is a gap to the panel's best single
entry on current_test, the figure issue bars speak of; nothing is trained again.

    .venv/bin/python benchmarks/bench_choice.py [--seeds 42,7,2024] [--only wage,small]
    .venv/bin/python benchmarks/bench_choice.py --stores FOLDER --saved quality.json

The first runs `bench_quality.py --main` itself (the whole bank, ~70 min on 2 cores); the
second replays a run kept earlier: FOLDER is the one bench_quality.py printed last (its
`main_<scenario>_<seed>` stores), quality.json what its `--save` wrote.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import subprocess
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import mlflow  # noqa: E402

from benchmarks.bench_quality import CHOICES, PANEL  # noqa: E402
from mlcycle.ingest.datasets import load_splits  # noqa: E402
from mlcycle.models import blending, selection  # noqa: E402
from mlcycle.models.selection import judging_slice  # noqa: E402
from mlcycle.models.served_blend import member_of  # noqa: E402
from mlcycle.monitoring.evaluate import score  # noqa: E402
from mlcycle.monitoring.metrics import PRIMARY, evaluate  # noqa: E402
from mlcycle.steps.blend import gather  # noqa: E402

# main's candidates in the order main trains them (an exact tie keeps the earlier one).
LABELS = ("optimize-nn", "refit-rf", "refit-hgb", "retrain")
RUN_TAG = {"optimize-nn": "optimize", "refit-rf": "refit-rf", "refit-hgb": "refit-hgb"}
SINGLES = [e for e in PANEL if e not in CHOICES]  # bench_quality's single entries
HALVES = 4  # random halvings of current_test for the more-rows comparison
RESAMPLES = 200  # bootstrap resamples of current_test for the test rows' own noise


@dataclass
class Stored:
    """One main run: the task, and each candidate's answers on the judging slice (as its
    step logged them) and on current_test (its registered model)."""

    task: str
    classes: list
    slice_truth: np.ndarray
    test_truth: np.ndarray
    slice: dict[str, blending.Candidate]
    test: dict[str, blending.Candidate]
    champion: float  # the figure of the champion main left in the store
    winner: str  # the candidate main nominated (its mlcycle.candidate_winner tag)


def test_answers(label: str, model, schema, test) -> blending.Candidate:
    """What a registered candidate answers on current_test, as the blend sees answers."""
    return blending.candidate_of(label, blending.slice_predictions(model, schema, test), schema)


def load_store(store: Path, seed: int) -> Stored:
    mlflow.set_tracking_uri(f"sqlite:///{store}/mlflow.db")
    client = mlflow.MlflowClient()
    main = mlflow.search_runs(
        search_all_experiments=True,
        output_format="list",
        filter_string="tags.`mlcycle.step` = 'main'",
    )[0]
    schema, splits = load_splits(main.data.tags["mlcycle.run.etl"])
    classes = list(schema.classes) if schema.task == "classification" else []
    test = splits.current_test
    truth = test[schema.target].to_numpy()
    slice_truth = judging_slice(splits.current_train, seed)[1][schema.target].to_numpy()
    sliced, tested = {}, {}
    for label in LABELS:
        run_id = main.data.tags.get(f"mlcycle.run.{RUN_TAG.get(label, label)}")
        if not run_id:
            raise SystemExit(f"{store}: main ran no {label} (main with its defaults expected)")
        candidates, left = gather({label: run_id}, schema, slice_truth)
        if left:
            raise SystemExit(f"{store}: candidate {label}: {left[label]}")
        sliced[label] = candidates[0]
        version = client.get_run(run_id).data.tags[selection.VERSION_TAG]
        model = member_of(mlflow.pyfunc.load_model(f"models:/bench/{version}"))
        tested[label] = test_answers(label, model, schema, test)
    champion = client.get_model_version_by_alias("bench", "champion").version
    kept = mlflow.pyfunc.load_model(f"models:/bench/{champion}")
    figure = score(kept, schema, splits)[f"current_test_{PRIMARY[schema.task]}"]
    winner = main.data.tags.get("mlcycle.candidate_winner", "")
    return Stored(schema.task, classes, slice_truth, truth, sliced, tested, figure, winner)


def measure(task: str, truth, weights: dict[str, float], answers: dict, classes: list) -> float:
    """The primary metric of one candidate's answers, or of a weighted blend's."""
    if len(weights) == 1:
        (label,) = weights
        return float(evaluate(task, truth, answers[label].labels)[PRIMARY[task]])
    members = [answers[label] for label in weights]
    values = blending.blended(members, np.asarray(list(weights.values())))
    return blending.score_of(task, truth, values, classes)


def mains_rule(task: str, truth, candidates: dict, classes: list, seed: int) -> dict[str, float]:
    """main's choice on these rows: the blend when the blend step keeps it, else the best
    single candidate (`selection.choose`), as weights."""
    outcome = blending.decide(task, truth, list(candidates.values()), classes, seed)
    if outcome.kept:
        return dict(zip(outcome.members, outcome.weights, strict=True))
    entries = [
        selection.Entry(label, label, measure(task, truth, {label: 1.0}, candidates, classes))
        for label in candidates
    ]
    winner, _ = selection.choose(entries, PRIMARY[task])
    return {winner.label: 1.0}


def on_rows(candidates: dict, rows) -> dict:
    return {label: blending.rows_of(c, rows) for label, c in candidates.items()}


def joined(first: dict, second: dict) -> dict:
    return {
        label: blending.Candidate(
            label,
            np.concatenate([first[label].values, second[label].values]),
            np.concatenate([first[label].labels, second[label].labels]),
        )
        for label in first
    }


def test_row_noise(run: Stored, chosen: dict[str, float], seed: int) -> float:
    """The variance, over bootstrap resamples of current_test, of main's choice minus the
    best single candidate of each resample (picked anew, as the bars pick the best panel
    entry on the test rows): how far the test rows alone move such a gap."""
    task, classes, test, truth = run.task, run.classes, run.test, run.test_truth
    rng = np.random.default_rng(seed)
    gaps = []
    for _ in range(RESAMPLES):
        rows = rng.integers(0, len(truth), len(truth))
        answers = on_rows(test, rows)
        best = max(measure(task, truth[rows], {label: 1.0}, answers, classes) for label in LABELS)
        gaps.append(measure(task, truth[rows], chosen, answers, classes) - best)
    return float(np.var(gaps))


def rules(run: Stored, seed: int) -> dict[str, float]:
    """Each rule's current_test figure on this run (the more-rows pair on test halves)."""
    task, classes, test = run.task, run.classes, run.test
    chosen = mains_rule(task, run.slice_truth, run.slice, classes, seed)
    out = {
        "main's rule": measure(task, run.test_truth, chosen, test, classes),
        "equal blend": measure(
            task, run.test_truth, {label: 1 / len(LABELS) for label in LABELS}, test, classes
        ),
        "ceiling": max(
            measure(task, run.test_truth, {label: 1 / k for label in subset}, test, classes)
            for k in range(1, len(LABELS) + 1)
            for subset in itertools.combinations(LABELS, k)
        ),
    }
    # The rule judged on the slice alone, and on the slice plus one half of current_test;
    # both scored on the other half: what more judging rows would buy.
    alone, more = [], []
    for repeat in range(HALVES):
        order = np.random.default_rng(repeat).permutation(len(run.test_truth))
        for extra, scored in ((order[::2], order[1::2]), (order[1::2], order[::2])):
            truth, answers = run.test_truth[scored], on_rows(test, scored)
            alone.append(measure(task, truth, chosen, answers, classes))
            rows_truth = np.concatenate([run.slice_truth, run.test_truth[extra]])
            bigger = joined(run.slice, on_rows(test, extra))
            judged = mains_rule(task, rows_truth, bigger, classes, seed)
            more.append(measure(task, truth, judged, answers, classes))
    out["more rows gain"] = float(np.mean(more) - np.mean(alone))
    out["recorded"] = run.champion
    out["agrees"] = run.winner == ("blend" if len(chosen) > 1 else next(iter(chosen)))
    out["noise variance"] = test_row_noise(run, chosen, seed)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stores", default="", help="the folder bench_quality.py --main printed")
    parser.add_argument("--saved", default="", help="the JSON file of that run (its --save)")
    parser.add_argument("--seeds", default="", help="for a new run: bench_quality's --seeds")
    parser.add_argument("--only", default="", help="comma-separated scenario names")
    args = parser.parse_args()
    if bool(args.stores) != bool(args.saved):
        parser.error("--stores and --saved go together (a kept bench_quality.py --main run)")
    if not args.stores:
        args.stores = tempfile.mkdtemp(prefix="bench_choice_")
        args.saved = str(Path(args.stores) / "quality.json")
        command = [sys.executable, str(ROOT / "benchmarks" / "bench_quality.py"), "--main"]
        command += ["--folder", args.stores, "--save", args.saved]
        command += [f"--{k}={v}" for k, v in (("seeds", args.seeds), ("only", args.only)) if v]
        subprocess.run(command, check=True)
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    saved = json.loads(Path(args.saved).read_text())["results"]
    names = ("main's rule", "equal blend", "ceiling")
    gaps: dict[str, list[float]] = {n: [] for n in (*names, "more rows gain")}
    variances = []  # of each scenario's mean gap over its seeds, from the test rows alone
    by_hand = []  # recorded main - the panel's hand pick, when the run has one
    print(
        f"{'scenario':<14}{'best single':>18}"
        + "".join(f"{n:>14}" for n in (*names, "more rows"))
        + "   recorded main   test-row SE   main - hand pick"
    )
    differ = []
    for scenario, cells in saved.items():
        stores = sorted(Path(args.stores).glob(f"main_{scenario}_*"))
        if not stores or (args.only and scenario not in args.only.split(",")):
            continue
        means = {e: float(np.mean(cells[e])) for e in SINGLES}
        best = max(means, key=means.get)
        seeds = [int(store.name.rsplit("_", 1)[1]) for store in stores]
        figures = [rules(load_store(st, sd), sd) for st, sd in zip(stores, seeds, strict=True)]
        differ += [
            f"{scenario} seed {sd}" for f, sd in zip(figures, seeds, strict=True) if not f["agrees"]
        ]
        line = f"{scenario:<14}{best:>12} {means[best]:.3f}"
        for n in names:
            gap = float(np.mean([f[n] for f in figures])) - means[best]
            gaps[n].append(gap)
            line += f"{gap:>+14.4f}"
        gain = float(np.mean([f["more rows gain"] for f in figures]))
        gaps["more rows gain"].append(gain)
        recorded = float(np.mean([f["recorded"] for f in figures])) - means[best]
        variances.append(sum(f["noise variance"] for f in figures) / len(figures) ** 2)
        line += f"{gain:>+14.4f}   {recorded:+13.4f}   {np.sqrt(variances[-1]):>11.4f}"
        if "hand pick" in cells:  # what a user trying the panel by hand would keep
            by_hand.append(recorded + means[best] - float(np.mean(cells["hand pick"])))
            line += f"   {by_hand[-1]:>+16.4f}"
        print(line, flush=True)
    print(
        f"{'average':<30}"
        + "".join(f"{np.mean(gaps[n]):>+14.4f}" for n in names)
        + f"{np.mean(gaps['more rows gain']):>+14.4f}"
        + f"{'':<19}{np.sqrt(sum(variances)) / len(variances):>11.4f}"
        + (f"   {np.mean(by_hand):>+16.4f}" if by_hand else "")
    )
    print(f"{'worst scenario':<30}" + "".join(f"{min(gaps[n]):>+14.4f}" for n in names))
    print(
        "the replayed choice is main's nomination (mlcycle.candidate_winner) on every run"
        if not differ
        else f"the replayed choice differs from main's nomination on: {', '.join(differ)}"
    )
    print(
        f"{len(list(Path(args.stores).glob('main_*')))} main runs; recorded main: the "
        "champion each run left in its store; test-row SE: the standard error the test rows "
        "alone give main's mean gap to the best of its single candidates (bootstrap)"
    )


if __name__ == "__main__":
    main()
