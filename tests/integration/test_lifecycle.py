"""A model's life after training: `score` on a batch of the stream, `rollback`, and the
promotion ledger that remembers every alias move. The real entry points run once each
through `mlflow run` or `python -m` (every such process costs ~20 s of imports here);
the rest calls the same click commands and steps in-process, on stores prepared
in-process with real models."""

import hashlib
import multiprocessing
import os
import re
import time
from datetime import UTC, datetime

import mlflow
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from entrypoints.retrain import main as retrain_command
from entrypoints.rollback import main as rollback_command
from entrypoints.score import main as score_command
from mlcycle import config
from mlcycle.errors import MlcycleError
from mlcycle.ingest.datasets import load_splits
from mlcycle.lifecycle import aliases, ledger, registry
from mlcycle.models import outputs
from mlcycle.models.families.rf import ForestParams
from mlcycle.models.families.rf import fit as fit_forest
from mlcycle.models.modelio import log_sklearn
from mlcycle.steps import score as score_step
from mlcycle.steps.etl import EtlParams
from mlcycle.steps.etl import execute as etl_execute
from tests.conftest import ROOT, assert_ok, mlflow_run, run_step

pytestmark = pytest.mark.integration

BATCH = ROOT / "data" / "stream" / "batch_02.csv"
NAME = config.DEFAULT_MODEL_NAME


def _etl(**params) -> str:
    etl_params = EtlParams(**params)
    with mlflow.start_run(run_name="etl") as run:
        mlflow.set_tag(config.STEP_TAG, "etl")
        mlflow.log_params(vars(etl_params))
        etl_execute(etl_params)
    return run.info.run_id


def _forest(etl_run: str, model_name: str = NAME, n_estimators: int = 15) -> str:
    """Register a forest as baseline does (version tagged with its etl run)."""
    schema, splits = load_splits(etl_run)
    params = ForestParams(n_estimators=n_estimators, n_jobs=1)
    pipeline = fit_forest(schema, params, splits.reference_train)
    with mlflow.start_run(run_name="forest"):
        mlflow.set_tag(config.STEP_TAG, "baseline")
        info = log_sklearn(pipeline, schema, splits.reference_train, model_name)
    version = str(info.registered_model_version)
    registry.tag_version(model_name, version, {"mlcycle.family": "rf", "mlcycle.etl_run": etl_run})
    return version


def _network(etl_run: str, model_name: str = NAME) -> str:
    """A short real retrain (2 epochs, one candidate: from scratch on the current rows):
    the network registered as challenger. What is scored is a network retrain logs, not
    its choice between windows (test_retrain.py), which trained and judged a second."""
    result = CliRunner().invoke(
        retrain_command,
        [
            "--etl-run",
            etl_run,
            "--model-name",
            model_name,
            "--epochs",
            "2",
            "--strategy",
            "scratch",
            "--window",
            "current",
        ],
    )
    assert result.exit_code == 0, (result.output, result.exception)
    return str(registry.version_for_alias(model_name, config.CHALLENGER).version)


def _invoke(command, *args):
    return CliRunner().invoke(command, [str(a) for a in args])


def _aliases(name: str = NAME) -> dict[str, str]:
    model = registry.client().get_registered_model(name)
    return {alias: str(version) for alias, version in model.aliases.items()}


def _runs(step: str):
    return mlflow.search_runs(
        search_all_experiments=True,
        output_format="list",
        filter_string=f"tags.`{config.STEP_TAG}` = '{step}'",
        order_by=["attributes.start_time ASC"],
    )


def _served(uri: str, frame: pd.DataFrame) -> np.ndarray:
    """What the model's own pyfunc (what `mlflow models serve` runs) predicts."""
    model = mlflow.pyfunc.load_model(uri)
    features = model.metadata.get_input_schema().input_names()
    return np.asarray(model.predict(frame[features]))


def _champion(version: str, reason: str = "first champion") -> None:
    aliases.apply(NAME, aliases.first_champion(aliases.read_state(NAME), version), reason)


# ------------------------------------------------------------------------------ score


def test_score_keeps_every_row_in_order_with_identifiers_for_a_forest_and_a_network(
    tracking_uri, tmp_path, monkeypatch
):
    etl_run = _etl()
    forest = _forest(etl_run)
    _champion(forest)
    network = _network(etl_run)
    batch = pd.read_csv(BATCH)

    # The real `mlflow run`, from another folder: the default model (the champion) and
    # the default output, under the folder the command was started from (as a user runs
    # it: without the suite's MLCYCLE_OUTPUT_ROOT).
    monkeypatch.delenv(config.OUTPUT_ROOT_ENV)
    result = mlflow_run("score", tracking_uri, {"input": str(BATCH)}, uri=str(ROOT), cwd=tmp_path)
    assert_ok(result)
    (written,) = (tmp_path / "predictions" / NAME).glob("*.parquet")
    assert re.fullmatch(r"\d{8}T\d{6}Z\.parquet", written.name)
    out = pd.read_parquet(written)
    assert list(out.columns) == ["prediction_id", "nom", "prenom", "row", "prediction"]
    assert len(out) == len(batch) == 610
    assert out["row"].tolist() == list(range(len(batch)))
    assert out["nom"].tolist() == batch["nom"].tolist()
    assert out["prenom"].tolist() == batch["prenom"].tolist()
    np.testing.assert_allclose(out["prediction"], _served(f"models:/{NAME}/{forest}", batch))

    (run,) = _runs("score")
    assert run.info.status == "FINISHED"
    tags, metrics = run.data.tags, run.data.metrics
    assert tags["mlcycle.model_uri"] == f"models:/{NAME}@champion"
    assert (tags["mlcycle.model_name"], tags["mlcycle.model_version"]) == (NAME, forest)
    assert tags["mlcycle.etl_run"] == etl_run and tags["mlcycle.output"] == str(written)
    digest = hashlib.sha256(written.read_bytes()).hexdigest()
    assert tags["mlcycle.output_digest"] == f"sha256:{digest}"
    assert sorted(p.name for p in written.parent.iterdir()) == [written.name]  # no lock left
    assert metrics["input_rows"] == metrics["output_rows"] == len(batch)
    assert metrics["prediction_mean"] == pytest.approx(out["prediction"].mean())
    assert metrics["prediction_min"] == pytest.approx(out["prediction"].min())
    (dataset,) = run.inputs.dataset_inputs
    assert dataset.dataset.name == "batch_02" and str(BATCH) in dataset.dataset.source

    # The network challenger, by alias, in chunks of 200 rows: the same file, in order.
    output = tmp_path / "network.parquet"
    params = score_step.ScoreParams(
        model_uri=f"models:/{NAME}@challenger", input=str(BATCH), output=str(output)
    )
    with mlflow.start_run() as scoring_run:
        scored = score_step.execute(params, chunk_rows=200)
    out = pd.read_parquet(output)
    assert scored.rows == len(out) == len(batch)
    assert out["row"].tolist() == list(range(len(batch)))
    assert out["nom"].tolist() == batch["nom"].tolist()
    np.testing.assert_allclose(
        out["prediction"], _served(f"models:/{NAME}/{network}", batch), rtol=1e-5
    )
    tags = mlflow.get_run(scoring_run.info.run_id).data.tags
    assert tags["mlcycle.model_version"] == network


def test_a_classifier_scores_labels_and_one_probability_per_class(
    tracking_uri, tmp_path, classification_csvs
):
    old, new = classification_csvs
    etl_run = _etl(reference=str(old), current=str(new), target="churn", drop_columns="customer_id")
    forest = _forest(etl_run)
    network = _network(etl_run)
    rows = pd.read_csv(new)
    for version in (forest, network):
        output = tmp_path / f"v{version}.parquet"
        result = _invoke(
            score_command, "--model-uri", f"models:/{NAME}/{version}", "--input", new,
            "--output", output,
        )  # fmt: skip
        assert result.exit_code == 0, (result.output, result.exception)
        out = pd.read_parquet(output)
        assert list(out.columns) == [
            "prediction_id",
            "customer_id",
            "row",
            "prediction",
            "proba_no",
            "proba_yes",
        ]
        assert out["customer_id"].tolist() == rows["customer_id"].tolist()
        assert set(out["prediction"]) <= {"no", "yes"}
        np.testing.assert_allclose(out[["proba_no", "proba_yes"]].sum(axis=1), 1.0, rtol=1e-6)
        # The label is the likelier class, and the same as the served model's.
        likelier = np.where(out["proba_yes"] > out["proba_no"], "yes", "no")
        assert (likelier == out["prediction"]).all()
        assert out["prediction"].tolist() == _served(f"models:/{NAME}/{version}", rows).tolist()
        metrics = _runs("score")[-1].data.metrics
        share = (out["prediction"] == "yes").mean()
        assert metrics["prediction_share.yes"] == pytest.approx(share)
        assert metrics["proba_mean.no"] == pytest.approx(out["proba_no"].mean())


def test_rows_the_model_cannot_score_are_one_line_and_nothing_is_written(tracking_uri, tmp_path):
    _forest(_etl())
    batch = pd.read_csv(BATCH)
    output = tmp_path / "out" / "p.parquet"

    # No champion yet: said so, with what to do.
    result = run_step("score", tracking_uri, "--input", str(BATCH), "--output", str(output))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"mlcycle error: {NAME} has no champion yet: train one first "
        "(mlflow run . -e main), or pass model_uri"
    )
    _champion("1")

    missing = tmp_path / "missing.csv"
    batch.drop(columns=["age", "region"]).to_csv(missing, index=False)
    result = _invoke(score_command, "--input", missing, "--output", output)
    assert result.exit_code == 2
    assert "lacks column(s) the model reads: age, region" in result.output

    # Text in a number, far down the file: the chunks before it were scored, and still
    # nothing is left behind.
    text = tmp_path / "text.csv"
    bad = batch.astype({"revenu_estime_mois": object})
    bad.loc[457, "revenu_estime_mois"] = "2 500 €"
    bad.to_csv(text, index=False)
    params = score_step.ScoreParams(input=str(text), output=str(output))
    with mlflow.start_run(), pytest.raises(MlcycleError) as error:
        score_step.execute(params, chunk_rows=100)
    assert str(error.value).startswith(
        f"column 'revenu_estime_mois' of the input file {text} should be numeric but holds "
        "'2 500 €' at row 457 (line 459); 1 such value(s) in rows 400-499"
    )
    assert not (tmp_path / "out").exists() and sorted(p.name for p in tmp_path.iterdir()) == [
        "artifacts", "missing.csv", "mlflow.db", "text.csv"
    ]  # fmt: skip

    # The same through the command: exit 2, one line; an existing output is left as it was.
    output.parent.mkdir()
    output.write_bytes(b"earlier predictions")
    result = _invoke(score_command, "--input", text, "--output", output)
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert result.output.startswith("mlcycle error: column 'revenu_estime_mois'")
    assert output.read_bytes() == b"earlier predictions"
    assert sorted(p.name for p in output.parent.iterdir()) == ["p.parquet"]

    result = _invoke(score_command, "--input", BATCH, "--output", tmp_path / "p.csv")
    assert result.exit_code == 2 and "predictions are written as Parquet" in result.output
    result = _invoke(score_command, "--input", tmp_path / "nope.csv", "--output", output)
    assert result.exit_code == 2 and "input file not found" in result.output


def test_an_output_no_file_can_be_made_in_or_another_run_writes_is_refused_before_the_model_loads(
    tracking_uri, tmp_path
):
    # No champion yet: a check made once the model had loaded would say that instead.
    result = _invoke(score_command, "--input", BATCH, "--output", "/proc/x.parquet")
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert result.output.startswith("mlcycle error: parameter output: cannot write /proc/x.parquet")

    _champion(_forest(_etl()))
    output = tmp_path / "p.parquet"
    with outputs.claimed(output):  # this process writes it, as another run would
        result = run_step("score", tracking_uri, "--input", str(BATCH), "--output", str(output))
    assert result.returncode != 0
    text = result.stdout + result.stderr
    (line,) = [x for x in text.splitlines() if x.startswith("mlcycle error:")]
    assert f"{output} is being written by another run (pid {os.getpid()} on " in line, line
    assert "Traceback" not in text and not output.exists()

    # Free again: written, and the lock gone with the run.
    with mlflow.start_run():
        scored = score_step.execute(score_step.ScoreParams(input=str(BATCH), output=str(output)))
    assert scored.output == output and sorted(tmp_path.iterdir()) == sorted(
        [output, tmp_path / "artifacts", tmp_path / "mlflow.db", tmp_path / "inference"]
    )


# --------------------------------------------------------------------- rollback and ledger


def _versions(n: int) -> list[str]:
    """n registered versions of one trained forest (rollback cares about versions, not
    weights): the first trained, the others registered from the same logged model."""
    first = _forest(_etl(), n_estimators=5)
    source = registry.client().get_model_version(NAME, first).source
    more = [str(mlflow.register_model(source, NAME).version) for _ in range(n - 1)]
    return [first, *more]


def _state_and_ledger():
    return _aliases(), [(e.alias, e.from_version, e.to_version) for e in ledger.history(NAME)]


def test_rollback_to_previous_then_to_a_named_version_answered_by_the_ledger_at_any_time(
    tracking_uri,
):
    v1, v2, v3 = _versions(3)
    before_all = datetime.now(UTC)
    _champion(v1)
    t_first = datetime.now(UTC)
    state = aliases.read_state(NAME)
    aliases.apply(NAME, aliases.nominate(state, v2), "retrained on batch_01")
    state = aliases.read_state(NAME)
    aliases.apply(NAME, aliases.promotion(state, v1, v2), "promoted: better r2 on current_test")
    t_promoted = datetime.now(UTC)
    assert _aliases() == {"champion": v2, "previous": v1}

    # The real entry point, with its MLproject defaults: back to previous.
    assert_ok(mlflow_run("rollback", tracking_uri))
    t_rolled_back = datetime.now(UTC)
    assert _aliases() == {"champion": v1, "previous": v2}
    (run,) = _runs("rollback")
    tags = run.data.tags
    assert (tags["mlcycle.model_version"], tags["mlcycle.replaced_version"]) == (v1, v2)

    # To a named version, with a reason, as `python -m` runs it.
    assert_ok(run_step("rollback", tracking_uri, "--to-version", v3, "--reason", "v1 drifts"))
    t_named = datetime.now(UTC)
    assert _aliases() == {"champion": v3, "previous": v1}

    history = ledger.history(NAME)
    assert [(e.alias, e.from_version, e.to_version, e.reason) for e in history] == [
        ("champion", None, v1, "first champion"),
        ("challenger", None, v2, "retrained on batch_01"),
        ("previous", None, v1, "promoted: better r2 on current_test"),
        ("champion", v1, v2, "promoted: better r2 on current_test"),
        ("challenger", v2, None, "promoted: better r2 on current_test"),
        ("champion", v2, v1, "manual rollback"),
        ("previous", v1, v2, "manual rollback"),
        ("champion", v1, v3, "v1 drifts"),
        ("previous", v2, v1, "v1 drifts"),
    ]
    rollback_runs = [r.info.run_id for r in _runs("rollback")]
    assert [e.run_id for e in history[-4:]] == [rollback_runs[0]] * 2 + [rollback_runs[1]] * 2
    assert all(e.code_version and e.time.tzinfo is UTC for e in history)
    assert [e.time for e in history] == sorted(e.time for e in history)

    assert ledger.champion_at(NAME, before_all) is None
    assert ledger.champion_at(NAME, t_first) == v1
    assert ledger.champion_at(NAME, t_promoted) == v2
    assert ledger.champion_at(NAME, t_rolled_back) == v1
    assert ledger.champion_at(NAME, t_named) == v3
    # Each answer is the version named from one move to the next, to the microsecond.
    for earlier, later in zip(history, history[1:], strict=False):
        if later.alias == "champion" and later.time > earlier.time:
            just_before = later.time - (later.time - earlier.time) / 2
            assert ledger.champion_at(NAME, just_before) == later.from_version
            assert ledger.champion_at(NAME, later.time) == later.to_version
    # A naive time is UTC, as the ledger writes.
    assert ledger.champion_at(NAME, t_promoted.replace(tzinfo=None)) == v2
    assert ledger.champion_at("another-model", t_named) is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--to-version", "9"], f"rollback of {NAME}: version 9 does not exist; nothing moved"),
        (["--to-version", "2"], f"rollback of {NAME}: version 2 is the champion already"),
        (["--to-version", "two"], "parameter to_version must be a version number or empty"),
        (["--model-name", "nope"], "parameter model_name: no registered model 'nope'"),
    ],
)
def test_a_rollback_that_cannot_be_done_is_one_line_and_moves_nothing(tracking_uri, args, message):
    v1, v2 = _versions(2)
    _champion(v1)
    aliases.apply(NAME, aliases.promotion(aliases.read_state(NAME), v1, v2), "promoted")
    before = _state_and_ledger()
    result = _invoke(rollback_command, *args)
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and result.output.startswith("mlcycle error: ")
    assert message in result.output
    assert _state_and_ledger() == before


def test_no_champion_or_no_previous_is_one_line_and_moves_nothing(tracking_uri):
    v1, v2 = _versions(2)
    result = _invoke(rollback_command, "--to-version", v1)
    assert result.exit_code == 2
    assert f"rollback of {NAME}: the model has no champion" in result.output
    assert _state_and_ledger() == ({}, [])

    _champion(v1)
    result = _invoke(rollback_command)
    assert result.exit_code == 2
    assert "no previous alias to roll back to: pass to_version=<version>" in result.output
    assert _aliases() == {"champion": v1} and len(ledger.history(NAME)) == 1

    result = run_step("rollback", mlflow.get_tracking_uri(), "--to-version", v2)
    assert_ok(result)
    assert _aliases() == {"champion": v2, "previous": v1}


def test_a_move_the_ledger_cannot_record_is_put_back(tracking_uri):
    (v1, v2) = _versions(2)
    _champion(v1)
    experiment = mlflow.get_experiment_by_name(ledger.EXPERIMENT)
    mlflow.MlflowClient().delete_experiment(experiment.experiment_id)
    with pytest.raises(MlcycleError, match="ledger's experiment 'mlcycle-ledger' is deleted"):
        aliases.apply(NAME, aliases.rollback(aliases.read_state(NAME), v2), "to v2")
    assert _aliases() == {"champion": v1}
    mlflow.MlflowClient().restore_experiment(experiment.experiment_id)
    assert [e.to_version for e in ledger.history(NAME)] == [v1]


def _record_many(uri: str, writer: int, n: int) -> None:
    mlflow.set_tracking_uri(uri)
    for i in range(n):
        move = aliases.Move(config.CHALLENGER, f"{writer}{i}", None)
        ledger.record("concurrent", [move], f"writer {writer}")


def test_concurrent_writers_lose_no_entry(tracking_uri):
    """Two processes recording at once, the ledger's experiment not yet created: every
    entry is kept (one run each, nothing read and written back)."""
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_record_many, args=(tracking_uri, w, 8)) for w in range(1, 3)]
    started = time.monotonic()
    for process in writers:
        process.start()
    for process in writers:
        process.join(timeout=300)
        assert process.exitcode == 0
    entries = ledger.history("concurrent")
    assert sorted(e.to_version for e in entries) == sorted(
        f"{w}{i}" for w in (1, 2) for i in range(8)
    )
    assert time.monotonic() - started < 300
