"""The main entry point: five child runs, a failure that names its step (through the real
`mlflow run . -e main`, its exit code passed on), a resume that reuses what finished, a
warm re-run that reuses everything, and use_cache=false, n_trials=0 and
force_baseline=true in one more run (then warm). After the first, the runs start
`python -m entrypoints.main` directly, as `mlflow run` would: what they test is main's
cache and registry, and each `mlflow run` front process costs ~2 s of CPU."""

import re
from pathlib import Path

import mlflow
import pytest

from mlcycle import config
from tests.conftest import assert_ok, flags, mlflow_run, run_step

pytestmark = pytest.mark.integration

# No refitted candidates here (their own test below): the step counts stay those of the
# five steps.
CHEAP = {"n_trials": 2, "optimize_family": "rf", "test_size": 0.2, "refit_families": ""}


def runs(filter_string: str):
    return mlflow.search_runs(
        search_all_experiments=True, output_format="list", filter_string=filter_string
    )


def aliases(name="loan-amount"):
    model = mlflow.MlflowClient().get_registered_model(name)
    return {alias: str(version) for alias, version in model.aliases.items()}


def main(tracking_uri: str, params: dict):
    """`python -m entrypoints.main` with these MLproject parameters as its flags."""
    return run_step("main", tracking_uri, *flags(params), timeout=900)


def registered(run_id: str, name="loan-amount") -> str:
    """The version a step's run registered."""
    (version,) = mlflow.MlflowClient().search_model_versions(
        f"name = '{name}' and run_id = '{run_id}'"
    )
    return str(version.version)


def test_main_fails_naming_the_step_resumes_and_reuses(tracking_uri, tmp_path):
    # 1. retrain refuses epochs=0: main fails, naming the step and its child run.
    failed = mlflow_run("main", tracking_uri, {**CHEAP, "epochs": 0})
    assert failed.returncode != 0
    assert "step retrain failed (child run " in failed.stderr
    (bad_retrain,) = runs(f"tags.`{config.STEP_TAG}` = 'retrain'")
    assert bad_retrain.info.status == "FAILED"
    assert bad_retrain.info.run_id in failed.stderr
    champion_before = aliases()["champion"]

    # 2. Fixed: finished steps are reused, the pipeline resumes at retrain. The forest
    #    the failed run registered is the champion now, so baseline has nothing to do.
    resumed = main(tracking_uri, {**CHEAP, "epochs": 2})
    assert_ok(resumed)
    for step in ("etl", "optimize"):
        assert f"step {step}: reusing finished identical run" in resumed.stderr, step
        assert len(runs(f"tags.`{config.STEP_TAG}` = '{step}'")) == 1, step
    assert (
        f"step baseline: skipped, loan-amount has a champion (version {champion_before})"
        in resumed.stderr
    )
    assert len(runs(f"tags.`{config.STEP_TAG}` = 'baseline'")) == 1
    (main_run,) = runs(f"tags.`{config.STEP_TAG}` = 'main' and attributes.status = 'FINISHED'")
    assert main_run.data.metrics["steps_reused"] == 2
    children = runs(f"tags.`mlflow.parentRunId` = '{main_run.info.run_id}'")
    # optimize's and retrain's candidates: the blend step judges them (CHEAP: no refits)
    assert {c.data.tags[config.STEP_TAG] for c in children} == {"retrain", "blend", "monitor"}
    # The champion is the forest the failed run's baseline registered on these rows: not
    # an incumbent that served, so monitor keeps the better of the two (incumbent=false).
    resumed_monitor = mlflow.get_run(main_run.data.tags["mlcycle.run.monitor"])
    assert resumed_monitor.data.params["incumbent"] == "False"
    assert resumed_monitor.data.tags["mlcycle.gate.incumbent"] == "false"
    page = Path(resumed_monitor.data.tags["mlcycle.report"]).read_text()
    assert "The champion is of this round" in " ".join(page.split())
    state = aliases()
    if state["champion"] != champion_before:
        # Promoted: the old champion is kept, the challenger alias is spent.
        assert state["previous"] == champion_before and "challenger" not in state
    else:
        assert "challenger" in state

    # 3. Nothing changed: every step is reused, nothing runs, no alias moves, even if
    #    step 2 promoted its challenger.
    warm = main(tracking_uri, {**CHEAP, "epochs": 2})
    assert_ok(warm)
    assert re.search(r"main: (\d+) of \1 steps reused", warm.stderr), warm.stderr[-2000:]
    for step in ("etl", "retrain", "monitor"):
        assert len(runs(f"tags.`{config.STEP_TAG}` = '{step}'")) == (
            2 if step == "retrain" else 1
        ), step
    assert aliases() == state

    # 4. use_cache=false, n_trials=0, force_baseline=true: every step runs again (none is
    #    reused), optimize is skipped, and the new forest replaces the champion: retrain
    #    starts from it, monitor compares with it, the old champion becomes previous.
    counts = {
        step: len(runs(f"tags.`{config.STEP_TAG}` = '{step}'"))
        for step in ("etl", "baseline", "optimize", "retrain", "monitor")
    }
    forced_params = {**CHEAP, "epochs": 2, "n_trials": 0, "force_baseline": "true"}
    forced = main(tracking_uri, {**forced_params, "use_cache": "false"})
    assert_ok(forced)
    assert "step optimize: skipped (n_trials=0)" in forced.stderr
    assert "reusing finished identical run" not in forced.stderr
    after = {step: len(runs(f"tags.`{config.STEP_TAG}` = '{step}'")) for step in counts}
    assert after == {**{s: n + 1 for s, n in counts.items()}, "optimize": counts["optimize"]}
    (last,) = runs(
        f"tags.`{config.STEP_TAG}` = 'main' and attributes.status = 'FINISHED'"
        " and metrics.steps_reused = 0"
    )
    forest = registered(last.data.tags["mlcycle.run.baseline"])
    assert forest not in (state["champion"], state.get("previous"))
    assert (
        f"step baseline: version {forest} is the champion now (previous: {state['champion']})"
        in forced.stderr
    )
    retrain = mlflow.get_run(last.data.tags["mlcycle.run.retrain"])
    assert retrain.data.params.get("params_from", "") == ""  # nothing tuned to take from
    assert retrain.data.params["base_model"] == f"models:/loan-amount/{forest}"
    monitor = mlflow.get_run(last.data.tags["mlcycle.run.monitor"])
    assert monitor.data.params["champion"] == f"models:/loan-amount/{forest}"
    assert monitor.data.params["incumbent"] == "False"  # main's own new forest
    forced_state = aliases()
    if forced_state["champion"] == forest:
        assert forced_state["previous"] == state["champion"]
    else:  # monitor promoted the network retrained from the forest
        assert forced_state["champion"] == registered(retrain.info.run_id)
        assert forced_state["previous"] == forest

    # 5. The same with the cache: everything is reused, and the forest does not take back
    #    the champion alias that step 4 left (it may have been promoted past the forest).
    again = main(tracking_uri, {**forced_params, "use_cache": "true"})
    assert_ok(again)
    assert "main: 4 of 4 steps reused" in again.stderr, again.stderr[-2000:]
    assert aliases() == forced_state


def test_main_nominates_the_best_candidate_on_the_slice_not_the_last_trained(tracking_uri):
    params = {**CHEAP, "refit_families": "rf,hgb", "epochs": 2, "promote": "false"}
    assert_ok(main(tracking_uri, params))
    (main_run,) = runs(f"tags.`{config.STEP_TAG}` = 'main'")
    tags, metrics = main_run.data.tags, main_run.data.metrics
    # rf is tuned, so only hgb is refitted: three candidates, each scored on the slice.
    labels = ("optimize-rf", "refit-hgb", "retrain")
    scores = {label: metrics[f"validation_r2.{label}"] for label in labels}
    assert len(runs(f"tags.`{config.STEP_TAG}` = 'optimize'")) == 2
    refit = mlflow.get_run(tags["mlcycle.run.refit-hgb"])
    assert refit.data.params["n_trials"] == "1" and refit.data.params["family"] == "hgb"
    # The blend step ran over the three: main shows its score kept or not, and a kept
    # blend is one more candidate.
    blend = mlflow.get_run(tags["mlcycle.run.blend"])
    assert blend.data.params["candidates"] == ",".join(
        f"{label}={tags[f'mlcycle.run.{step}']}"
        for label, step in (
            ("optimize-rf", "optimize"),
            ("refit-hgb", "refit-hgb"),
            ("retrain", "retrain"),
        )
    )
    assert metrics["validation_r2.blend"] == blend.data.metrics["validation_r2"]
    assert tags["mlcycle.blend_reason"] == blend.data.tags["mlcycle.blend_reason"]
    if tags["mlcycle.blend_kept"] == "true":
        scores["blend"] = metrics["validation_r2.blend"]
    winner = max(scores, key=scores.get)
    assert tags["mlcycle.candidate_winner"] == winner
    run_of = {"optimize-rf": "optimize", "refit-hgb": "refit-hgb", "retrain": "retrain"}
    run_of["blend"] = "blend"
    version = registered(tags[f"mlcycle.run.{run_of[winner]}"])
    monitor = mlflow.get_run(tags["mlcycle.run.monitor"])
    assert monitor.data.params["challenger"] == f"models:/loan-amount/{version}"
    assert aliases()["challenger"] == version
    # Two epochs make a poor network: the winner is a tree, nominated after retrain.
    assert (
        winner != "retrain"
        and f"{winner} (version {version}) has the best" in (tags["mlcycle.candidate_reason"])
    )
    # How sure the slice is: the winner's lead over the runner-up, bounds and all; none
    # for a kept blend (tests/unit/steps/test_main.py covers a single winner's).
    if winner == "blend":
        assert "validation_lead" not in metrics
    else:
        runner = max((label for label in labels if label != winner), key=scores.get)
        lead = metrics["validation_lead"]
        assert lead == pytest.approx(scores[winner] - scores[runner], abs=1e-9)
        assert metrics["validation_lead_ci_low"] <= lead <= metrics["validation_lead_ci_high"]
        assert f"its lead over {runner} on the " in tags["mlcycle.candidate_reason"]
