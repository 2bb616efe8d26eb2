"""The real monitor step: once through `mlflow run . -e monitor`, then the same click
command in-process (every step subprocess costs ~20 s of imports on these machines), on
stores prepared in-process. Promotion and non-promotion, aliases checked after each."""

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from mlflow.exceptions import MlflowException

from entrypoints.monitor import main as monitor_command
from mlcycle import config
from mlcycle.ingest import datagen
from mlcycle.ingest.datasets import load_splits
from mlcycle.lifecycle import registry
from mlcycle.models.families import rf
from mlcycle.models.served_forest import log_forest
from mlcycle.monitoring.evaluate import score
from mlcycle.steps.etl import EtlParams, execute
from tests.conftest import assert_ok, flags, mlflow_run, run_step

pytestmark = pytest.mark.integration


def _etl(**params) -> str:
    etl_params = EtlParams(**params)
    with mlflow.start_run(run_name="etl") as run:
        mlflow.set_tag(config.STEP_TAG, "etl")
        mlflow.log_params(vars(etl_params))
        execute(etl_params)
    return run.info.run_id


def _forest(
    etl_run: str, model_name: str, train: str = "reference_train", **params
) -> tuple[str, dict]:
    """Register a forest as baseline does (fitted on the `train` split; current_train
    gives a challenger clearly better under the bundled data's drift); returns (version,
    its test metrics)."""
    schema, splits = load_splits(etl_run)
    rows = getattr(splits, train)
    pipeline = rf.fit(schema, rf.ForestParams(n_jobs=1, **params), rows)
    with mlflow.start_run(run_name="forest"):
        mlflow.set_tag(config.STEP_TAG, "baseline")
        info = log_forest(pipeline, schema, rows, model_name)
    registry.tag_version(model_name, info.registered_model_version, {"mlcycle.family": "rf"})
    return str(info.registered_model_version), score(pipeline, schema, splits)


def _aliases(name: str) -> dict[str, str]:
    model = registry.client().get_registered_model(name)
    return {alias: str(version) for alias, version in model.aliases.items()}


def _monitor(*args: str):
    """The real click command, in this process."""
    result = CliRunner().invoke(monitor_command, list(args))
    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    return result


def _monitor_runs():
    return mlflow.search_runs(
        search_all_experiments=True,
        output_format="list",
        filter_string=f"tags.`{config.STEP_TAG}` = 'monitor'",
        order_by=["attributes.start_time DESC"],
    )


def test_monitor_promotes_only_a_challenger_that_passes_the_gate(tracking_uri, tmp_path):
    name = "loan-amount"
    etl_run = _etl()
    first, _ = _forest(etl_run, name, n_estimators=10, max_depth=4)
    # Fitted on the new rows: better on them beyond the gate's noise, so promotion is certain.
    second, _ = _forest(etl_run, name, train="current_train", n_estimators=20, seed=7)
    registry.set_alias(name, config.CHAMPION, first)
    registry.set_alias(name, config.CHALLENGER, second)
    out = tmp_path / "reports"

    # 1. An impossible min_improvement: nothing moves, and the reason says which check.
    result = mlflow_run(
        "monitor",
        tracking_uri,
        {"etl_run": etl_run, "promote": "true", "min_improvement": 1.0, "output": out},
    )
    assert_ok(result)
    assert _aliases(name) == {"champion": first, "challenger": second}
    (run,) = _monitor_runs()
    tags, metrics = run.data.tags, run.data.metrics
    assert tags["mlcycle.promotion.decision"] == "not_promoted"
    assert "better on current_test by at least 1" in tags["mlcycle.promotion.reason"]
    version_tags = registry.client().get_model_version(name, second).tags
    assert version_tags["mlcycle.promotion.decision"] == "not_promoted"
    assert version_tags["mlcycle.promotion.monitor_run"] == run.info.run_id
    assert {
        "drift_share",
        "n_drifted_columns",
        "champion_current_test_r2",
        "challenger_reference_test_rmse",
        "target_drift",
    } <= set(metrics)
    assert metrics["n_drifted_columns"] >= 1  # the bundled new data drifted on purpose
    report_html = Path(tags["mlcycle.report"])
    assert report_html.parent.parent == out / name and report_html.exists()
    assert (report_html.parent / "evidently.html").exists()
    assert (out / name / "latest.html").exists()
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "report")}
    assert {"report/report.html", "report/evidently.html"} <= artifacts
    html = report_html.read_text()
    assert "Not promoted" in html.split('id="drift"')[0]

    # 1b. The same promotion failing after the decision (the artifact store goes away while
    #     the report is uploaded): the run fails, the aliases have not moved.
    with pytest.MonkeyPatch.context() as patch:

        def unreachable(*args, **kwargs):
            raise MlflowException("artifact store unreachable")

        patch.setattr("mlcycle.steps.monitor.mlflow.log_artifacts", unreachable)
        failed = CliRunner().invoke(
            monitor_command,
            ["--etl-run", etl_run, "--promote", "true", "--tolerance", "1", "--output", str(out)],
        )
    assert failed.exit_code != 0 and "artifact store unreachable" in str(failed.exception)
    assert _aliases(name) == {"champion": first, "challenger": second}
    assert _monitor_runs()[0].info.status == "FAILED"
    # An output folder that cannot be written is named before any work is done.
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    refused = CliRunner().invoke(monitor_command, ["--output", str(blocker / "reports")])
    assert refused.exit_code == 2
    assert f"parameter output: cannot write reports to {blocker}" in refused.output
    assert len(_monitor_runs()) == 2

    # 2. The default gate with a loose tolerance: the better challenger becomes champion.
    result = _monitor(
        "--etl-run", etl_run, "--promote", "true", "--tolerance", "1", "--output", str(out)
    )
    assert _aliases(name) == {"champion": second, "previous": first}
    run = _monitor_runs()[0]
    assert run.data.tags["mlcycle.promotion.decision"] == "promoted"
    assert run.data.metrics["promoted"] == 1.0
    assert (
        registry.client().get_model_version(name, second).tags["mlcycle.promotion.decision"]
        == "promoted"
    )
    assert f"report: {out / name}" in result.output
    latest = (out / name / "latest.html").read_text()
    assert "Challenger promoted to champion" in latest
    # The page announced the very moves that were applied.
    assert f"Aliases now: champion = version {second}, previous = version {first}." in latest

    # 3. No challenger left: still a report of drift and the champion, exit 0, no move.
    _monitor("--etl-run", etl_run, "--promote", "true", "--output", str(out))
    assert _aliases(name) == {"champion": second, "previous": first}
    run = _monitor_runs()[0]
    assert "no challenger" in run.data.tags["mlcycle.promotion.reason"]
    assert "champion_current_test_r2" in run.data.metrics
    assert "challenger_current_test_r2" not in run.data.metrics
    assert len(list((out / name).glob("2*/report.html"))) == 4  # the failed run's too


def test_classification_report_without_models_then_with_a_qualified_challenger(
    tracking_uri, tmp_path, classification_csvs
):
    old, new = classification_csvs
    etl_run = _etl(reference=str(old), current=str(new), target="churn", drop_columns="customer_id")
    out = tmp_path / "reports"
    # No champion, no challenger: the drift report alone, exit 0.
    _monitor("--etl-run", etl_run, "--model-name", "churn", "--output", str(out))
    html = (out / "churn" / "latest.html").read_text()
    assert "Data drift:" in html and "no challenger" in html and "missing" in html

    champion, _ = _forest(etl_run, "churn", n_estimators=5, max_depth=2)
    challenger, _ = _forest(etl_run, "churn", n_estimators=20, class_weight="balanced")
    registry.set_alias("churn", config.CHAMPION, champion)
    # The challenger is named by version, as optimize or retrain may hand it over.
    _monitor(
        "--etl-run",
        etl_run,
        "--model-name",
        "churn",
        "--challenger",
        f"models:/churn/{challenger}",
        "--output",
        str(out),
    )
    assert _aliases("churn") == {"champion": champion}  # promote=false: nothing moves
    run = _monitor_runs()[0]
    assert run.data.tags["mlcycle.promotion.decision"] in ("qualified", "not_promoted")
    assert {"champion_current_test_f1", "challenger_current_test_roc_auc"} <= set(run.data.metrics)
    html = (out / "churn" / "latest.html").read_text()
    assert 'id="per-class"' in html and "confusion matrix, challenger" in html


def test_bad_parameters_get_one_line_and_exit_2(tracking_uri):
    runner = CliRunner()
    result = runner.invoke(monitor_command, ["--tolerance", "-1"])
    assert result.exit_code == 2 and "parameter tolerance must be a number >= 0" in result.output
    result = runner.invoke(monitor_command, ["--tolerance", "lots"])
    assert result.exit_code == 2
    assert "parameter tolerance must be auto or a number >= 0, got 'lots'" in result.output
    result = runner.invoke(monitor_command, ["--etl-run", "nope"])
    assert result.exit_code == 2 and "no run with id 'nope'" in result.output
    result = runner.invoke(monitor_command, ["--promote", "maybe"])
    assert result.exit_code == 2 and "is not true or false" in result.output


def test_two_monitors_at_once_leave_consistent_aliases_and_never_apply_a_stale_plan(
    tracking_uri, tmp_path
):
    """Both read champion=first, challenger=second and both decide to promote; the one
    that moves second finds the aliases moved since it read them: its plan is refused,
    its run still finishes, and its tags and page say why."""
    import subprocess
    import sys

    from tests.conftest import ROOT, step_env

    name = "race"
    etl_run = _etl()
    first, _ = _forest(etl_run, name, n_estimators=10, max_depth=3)
    second, _ = _forest(etl_run, name, train="current_train", n_estimators=20, seed=7)
    registry.set_alias(name, config.CHAMPION, first)
    registry.set_alias(name, config.CHALLENGER, second)
    args = ["--etl-run", etl_run, "--model-name", name, "--promote", "true", "--tolerance", "1"]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "entrypoints.monitor", *args, "--output", str(tmp_path / n)],
            cwd=ROOT,
            env=step_env(tracking_uri),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in ("a", "b")
    ]
    outputs = [p.communicate(timeout=600) for p in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err[-3000:]
    assert _aliases(name) == {"champion": second, "previous": first}
    runs = [r for r in _monitor_runs() if r.data.params.get("model_name") == name]
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    decisions = sorted(r.data.tags["mlcycle.promotion.decision"] for r in runs)
    assert decisions == ["not_promoted", "promoted"]
    (loser,) = [r for r in runs if r.data.tags["mlcycle.promotion.decision"] == "not_promoted"]
    reason = loser.data.tags["mlcycle.promotion.reason"]
    # Which depends on timing: it read the aliases before the other moved them (its plan
    # is refused as stale), or after (the challenger alias was already spent).
    assert "moved since they were read" in reason or "no challenger" in reason, reason
    assert loser.data.metrics["promoted"] == 0.0
    page = Path(loser.data.tags["mlcycle.report"]).read_text()
    assert "promoted to champion" not in page


def test_the_gate_refuses_an_equal_challenger_promotes_a_better_one_and_shows_why(
    tracking_uri, tmp_path
):
    """Two forests of the same recipe and rows, seeds apart, are equal in expected quality:
    the point rule promotes whichever the test rows favour, the bootstrap gate does not. A
    forest fitted on the new rows is promoted, and the page shows the interval and the
    picture of the resampled differences (opened in Chromium)."""
    from tests.integration.test_report_browser import ARGS, Visit, chromium, open_page

    name = "gated"
    # No drift: a new sample of the reference's own population.
    same = tmp_path / "same.csv"
    datagen.write_csv(datagen.generate(datagen.OLD, 2000, seed=99), same)
    still = _etl(current=str(same))
    champion, _ = _forest(still, name, n_estimators=30, seed=1)
    twin, _ = _forest(still, name, n_estimators=30, seed=2)
    registry.set_alias(name, config.CHAMPION, champion)
    out = tmp_path / "reports"
    common = ["--model-name", name, "--output", str(out)]
    twin_args = [*common, "--etl-run", still, "--challenger", f"models:/{name}/{twin}"]
    # The point rule would take it: the test rows happen to favour the twin.
    _monitor(*twin_args, "--confidence", "0")
    assert _monitor_runs()[0].data.tags["mlcycle.promotion.decision"] == "qualified"
    _monitor(*twin_args, "--promote", "true")
    run = _monitor_runs()[0]
    metrics = run.data.metrics
    assert run.data.tags["mlcycle.promotion.decision"] == "not_promoted"
    assert (
        "lower bound" in run.data.tags["mlcycle.promotion.reason"]
        or "bounds" in (run.data.tags["mlcycle.promotion.reason"])
    )
    assert _aliases(name) == {"champion": champion}
    assert (
        metrics["gate_delta_ci_low"] <= 0 < metrics["gate_delta"] <= metrics["gate_delta_ci_high"]
    )
    # The same population on both sides: the reference check stays strict.
    assert run.data.tags["mlcycle.gate.relationship"] == "held"
    assert metrics["reference_excused"] == 0.0

    etl_run = _etl()
    common += ["--etl-run", etl_run, "--promote", "true"]
    better, _ = _forest(etl_run, name, train="current_train", n_estimators=30, seed=3)
    _monitor(*common, "--challenger", f"models:/{name}/{better}", "--tolerance", "1")
    run = _monitor_runs()[0]
    assert run.data.tags["mlcycle.promotion.decision"] == "promoted"
    assert run.data.metrics["gate_delta_ci_low"] > 0
    assert _aliases(name) == {"champion": better, "previous": champion}
    history_json = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/report/history.json")
    assert [h["run_id"] for h in json.loads(history_json)][-1] == run.info.run_id

    from playwright.sync_api import sync_playwright

    visit = Visit()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=ARGS)
        page = open_page(browser, Path(run.data.tags["mlcycle.report"]), visit)
        checks = page.locator("#checks").inner_text()
        assert "95% bounds" in checks, checks
        assert page.locator("#gate-picture img").count() == 1
        assert page.locator("#history-table tbody tr").count() == 3  # every run of the model
        browser.close()
    assert not visit.network and not visit.errors, (visit.network, visit.errors)


def _prices(path: Path, seed: int, intercept: float, slope: float, year: int = 0) -> None:
    """Prices of flats from their surface and district: one pricing rule per file (and the
    year of sale as a column, when given)."""
    rng = np.random.default_rng(seed)
    surface = rng.uniform(20, 200, 1000)
    district = rng.choice(["nord", "sud", "est", "ouest"], 1000)
    bonus = np.where(district == "ouest", 40.0, 0.0)
    price = intercept + slope * surface + bonus + rng.normal(0, 30, 1000)
    frame = pd.DataFrame({"surface": surface.round(1), "quartier": district, "prix": price})
    if year:
        frame.insert(0, "annee", year)
    frame.to_csv(path, index=False)


def test_after_a_regime_change_the_gate_stops_defending_the_old_prices(tracking_uri, tmp_path):
    """The market moved: the same flats are priced by another rule. A forest fitted on the
    new prices gains on current_test less than it loses on the old rows (whose target
    spread is smaller), so a reference check blind to the change keeps the stale forest;
    the gate sees the relationship changed and judges only what the challenger forgot
    beyond what the change costs, and promotes it. A tolerance set by hand is kept."""
    before, after = tmp_path / "before.csv", tmp_path / "after.csv"
    _prices(before, 1, intercept=500, slope=1.0)
    _prices(after, 2, intercept=600, slope=1.6)
    etl_run = _etl(reference=str(before), current=str(after), target="prix", drop_columns="")
    name = "prices"
    champion, _ = _forest(etl_run, name, n_estimators=30, seed=1)
    challenger, metrics = _forest(etl_run, name, train="current_train", n_estimators=30, seed=2)
    registry.set_alias(name, config.CHAMPION, champion)
    out = tmp_path / "reports"
    common = ["--etl-run", etl_run, "--model-name", name, "--output", str(out), "--promote", "true"]
    common += ["--challenger", f"models:/{name}/{challenger}"]

    _monitor(*common, "--tolerance", "0.5")
    run = _monitor_runs()[0]
    assert run.data.tags["mlcycle.promotion.decision"] == "not_promoted"
    assert run.data.tags["mlcycle.gate.relationship"] == "changed"
    assert run.data.metrics["reference_excused"] == 0.0  # the user's tolerance, as given
    assert _aliases(name) == {"champion": champion}

    _monitor(*common)
    run = _monitor_runs()[0]
    numbers = run.data.metrics
    assert run.data.tags["mlcycle.promotion.decision"] == "promoted", run.data.tags
    # Far worse on the old rows than its gain on the new ones: only the change excuses it.
    loss = numbers["champion_reference_test_r2"] - numbers["challenger_reference_test_r2"]
    assert loss > numbers["gate_delta"] > 0
    assert 0 < numbers["relationship_cost_ci_low"] <= numbers["reference_excused"]
    assert numbers["reference_excused"] == numbers["relationship_cost"]
    assert _aliases(name) == {"champion": challenger, "previous": champion}
    page = Path(run.data.tags["mlcycle.report"]).read_text()
    assert 'id="relationship"' in page and "beyond the" in page
    assert "beyond what the relationship change costs there" in page


def test_a_refused_promotion_is_published_once_and_says_the_aliases_did_not_move(
    tracking_uri, tmp_path, monkeypatch
):
    """Another run moves the champion alias between this run's publishing and its alias
    moves (done here by a real registry write at that moment): the moves are refused as
    stale, the one report folder's page and the run's tags say so, and the metrics are
    not logged twice."""
    from mlcycle.monitoring import publish

    name = "refused"
    etl_run = _etl()
    first, _ = _forest(etl_run, name, n_estimators=10, max_depth=3)
    second, _ = _forest(etl_run, name, train="current_train", n_estimators=20, seed=7)
    registry.set_alias(name, config.CHAMPION, first)
    registry.set_alias(name, config.CHALLENGER, second)
    real_publish = publish.publish

    def publish_then_another_run_moves(outcome):
        published = real_publish(outcome)
        registry.set_alias(name, config.CHAMPION, second)
        return published

    monkeypatch.setattr(publish, "publish", publish_then_another_run_moves)
    out = tmp_path / "reports"
    _monitor(
        *["--etl-run", etl_run, "--model-name", name, "--promote", "true", "--tolerance", "1"],
        *["--output", str(out)],
    )
    run = _monitor_runs()[0]
    tags = run.data.tags
    assert tags["mlcycle.promotion.decision"] == "not_promoted"
    assert tags["mlcycle.promotion.reason"].startswith("qualified, but the aliases did not move")
    assert run.data.metrics["promoted"] == 0.0
    folders = [p for p in (out / name).iterdir() if p.is_dir()]
    assert len(folders) == 1 and Path(tags["mlcycle.report"]).parent == folders[0]
    page = Path(tags["mlcycle.report"]).read_text()
    assert "the aliases did not move" in page and "promoted to champion" not in page
    client = mlflow.MlflowClient()
    assert len(client.get_metric_history(run.info.run_id, "drift_share")) == 1
    history = json.loads((folders[0] / "history.json").read_text())
    assert history[-1]["decision"] == "not_promoted"
    version = client.get_model_version(name, second)
    assert version.tags["mlcycle.promotion.decision"] == "not_promoted"
    assert _aliases(name)["champion"] == second  # as the other run left it


def test_a_gate_on_too_few_test_rows_says_not_enough_rows_and_moves_nothing(tracking_uri, tmp_path):
    """100 rows a file: 20 test rows a split. A challenger fitted on the new rows looks
    better, but 20 rows cannot tell: the real monitor process decides "not enough rows"."""
    name = "tiny"
    for source, small in (("df_old.csv", "old.csv"), ("df_new.csv", "new.csv")):
        pd.read_csv(config.PROJECT_ROOT / "data" / source).head(100).to_csv(
            tmp_path / small, index=False
        )
    etl_run = _etl(reference=str(tmp_path / "old.csv"), current=str(tmp_path / "new.csv"))
    first, _ = _forest(etl_run, name, n_estimators=10, max_depth=4)
    second, _ = _forest(etl_run, name, train="current_train", n_estimators=10, seed=7)
    registry.set_alias(name, config.CHAMPION, first)
    registry.set_alias(name, config.CHALLENGER, second)
    out = tmp_path / "reports"
    params = {"etl_run": etl_run, "model_name": name, "promote": "true", "output": out}
    assert_ok(run_step("monitor", tracking_uri, *flags(params)))
    assert _aliases(name) == {"champion": first, "challenger": second}
    (run,) = _monitor_runs()
    tags, metrics = run.data.tags, run.data.metrics
    assert tags["mlcycle.promotion.decision"] == "not_enough_rows"
    assert tags["mlcycle.promotion.reason"].startswith(
        "not enough rows to decide: current_test has 20 row(s), fewer than the 30"
    )
    assert metrics["gate_not_enough_rows"] == 1.0 and metrics["promoted"] == 0.0
    version_tags = registry.client().get_model_version(name, second).tags
    assert version_tags["mlcycle.promotion.decision"] == "not_enough_rows"
    page = Path(tags["mlcycle.report"]).read_text()
    assert 'class="verdict not_enough_rows"' in page
    assert "Not promoted: not enough test rows to decide" in page


def test_old_rows_a_year_column_sets_apart_are_not_held_against_the_challenger(
    tracking_uri, tmp_path
):
    """The same repricing with the year of sale in both files: the year tells the sides
    apart, so the side flag measures nothing (the trees split on the year) and the check
    read "held" and kept the stale forest. The overlap of the two sides' features is 0:
    the old rows lie where the present does not go, and the challenger is judged on
    current_test."""
    before, after = tmp_path / "before.csv", tmp_path / "after.csv"
    _prices(before, 1, intercept=500, slope=1.0, year=2023)
    _prices(after, 2, intercept=600, slope=1.6, year=2024)
    etl_run = _etl(reference=str(before), current=str(after), target="prix", drop_columns="")
    name = "prices-by-year"
    champion, _ = _forest(etl_run, name, n_estimators=30, seed=1)
    challenger, _ = _forest(etl_run, name, train="current_train", n_estimators=30, seed=2)
    registry.set_alias(name, config.CHAMPION, champion)
    out = tmp_path / "reports"
    common = ["--etl-run", etl_run, "--model-name", name, "--output", str(out), "--promote", "true"]
    _monitor(*common, "--challenger", f"models:/{name}/{challenger}")
    run = _monitor_runs()[0]
    numbers = run.data.metrics
    assert run.data.tags["mlcycle.gate.relationship"] == "apart", run.data.tags
    assert numbers["reference_overlap"] < 0.01
    loss = numbers["champion_reference_test_r2"] - numbers["challenger_reference_test_r2"]
    assert loss > numbers["gate_delta"] > 0  # what the strict check refused
    assert run.data.tags["mlcycle.promotion.decision"] == "promoted", run.data.tags
    assert _aliases(name) == {"champion": challenger, "previous": champion}
    page = Path(run.data.tags["mlcycle.report"]).read_text()
    assert "its rows lie where the present&#39;s do not" in page or (
        "its rows lie where the present's do not" in page
    )
