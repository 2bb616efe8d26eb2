"""The boosted-trees family: fitted on raw rows, served as the forest is (compiled trees
giving the Pipeline's answers, the 400 naming a column), and its search space, whose
first trial is its defaults."""

import json

import numpy as np
import optuna
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from mlcycle.errors import MlcycleError
from mlcycle.ingest.data import Schema
from mlcycle.models.families import hgb
from mlcycle.models.served_forest import COMPILED, ForestModel, ForestPyfunc

optuna.logging.set_verbosity(optuna.logging.WARNING)

REG = Schema(target="y", task="regression", numeric=["x", "z"], categorical=["kind"])
BIN = Schema("label", "classification", ["x", "z"], ["kind"], classes=["no", "yes"])
FAST = hgb.BoostingParams(max_iter=60, seed=0)


def rows(n=300, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x, z = rng.normal(size=n), rng.uniform(0, 100, size=n)
    kind = rng.choice(["a", "b", "c"], n).astype(object)
    y = 3 * x + 0.02 * z + (kind == "a") + rng.normal(scale=0.3, size=n)
    frame = pd.DataFrame({"x": x, "z": z, "kind": kind, "y": y})
    frame["label"] = np.where(y > np.median(y), "yes", "no")
    return frame


def raw(frame: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """Rows as a client sends them: holes, a category never seen, text missing as None."""
    out = frame[schema.features].reset_index(drop=True).copy()
    out.loc[0::7, "x"] = np.nan
    out.loc[1::7, "kind"] = None
    out.loc[2::7, "kind"] = "never seen"
    out.loc[3::7, "kind"] = np.nan
    return out


@pytest.fixture(scope="module")
def regression():
    train = rows()
    pipeline = hgb.fit(REG, FAST, train)
    return train, pipeline, ForestModel.build(pipeline, REG, train)


def test_it_learns_raw_rows_and_the_compiled_trees_answer_as_the_pipeline(regression):
    train, pipeline, model = regression
    assert model.engine == COMPILED and model.fallback is None
    assert pipeline.named_steps["model"].n_iter_ <= FAST.max_iter
    test = raw(rows(200, seed=1), REG)
    for n in (1, 5, len(test)):  # both sides of the compiled / batch switch
        ours, theirs = model.predict(test.head(n)), pipeline.predict(test.head(n))
        np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=0)
    fresh = rows(200, seed=2)
    assert np.corrcoef(model.predict(fresh[REG.features]), fresh["y"])[0, 1] > 0.9


def test_saved_and_loaded_it_answers_the_same_and_says_its_family(regression, tmp_path):
    train, pipeline, model = regression
    path = model.save(tmp_path / "forest")
    assert json.loads((path / "forest.json").read_text())["family"] == "hgb"
    loaded = ForestModel.load(path)
    test = raw(rows(50, seed=3), REG)
    assert loaded.engine == COMPILED
    np.testing.assert_array_equal(loaded.predict(test), model.predict(test))


def test_a_bad_column_is_a_400_naming_it(regression):
    _, _, model = regression
    pyfunc = ForestPyfunc()
    pyfunc.model = model
    row = rows(1).loc[:, REG.features].astype(object)
    row.loc[0, "z"] = "lots"
    with pytest.raises(MlflowException, match="column 'z' should be numeric but holds 'lots'") as e:
        pyfunc.predict(None, row)
    assert e.value.error_code == "INVALID_PARAMETER_VALUE"


def test_classification_gives_the_pipelines_labels_and_probabilities():
    train = rows(400, seed=4)
    pipeline = hgb.fit(BIN, FAST, train)
    model = ForestModel.build(pipeline, BIN, train)
    assert model.engine == COMPILED
    test = raw(rows(100, seed=5), BIN)
    assert list(model.predict(test)) == list(pipeline.predict(test))
    np.testing.assert_allclose(
        model.predict_proba(test), pipeline.predict_proba(test), rtol=1e-9, atol=1e-12
    )
    assert model.classes_ == ["no", "yes"]


def test_bad_parameters_are_one_line_naming_them():
    with pytest.raises(MlcycleError, match="^parameter learning_rate must be > 0, got 0"):
        hgb.BoostingParams(learning_rate=0).validate()
    with pytest.raises(MlcycleError, match="^parameter class_weight must be empty or balanced"):
        hgb.BoostingParams(class_weight="heavy").validate()
    assert hgb.params_from({"family": "hgb", "max_leaf_nodes": 15}).max_leaf_nodes == 15


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_the_space_gives_valid_params_and_holds_the_defaults(task):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(30):
        trial = study.ask()
        params = hgb.suggest(trial, task, seed=3).validate()
        study.tell(trial, 0.0)
        assert params.early_stopping and params.seed == 3
        assert 0.01 <= params.learning_rate <= 0.3 and 7 <= params.max_leaf_nodes <= 127
    defaults = hgb.suggest(optuna.trial.FixedTrial(hgb.default_trial(task)), task, seed=3)
    assert defaults == hgb.BoostingParams(seed=3)
    best = json.loads(json.dumps(hgb.best_params(study.best_trial, task, 3)))
    assert hgb.params_from(best).validate().seed == 3


def test_the_objective_judges_on_retrains_slice_and_prunes_nothing():
    from mlcycle.models.candidates import validation_slice
    from mlcycle.models.network import NetworkParams

    train = rows(200)
    objective = hgb.objective(REG, train, "r2", "maximize", seed=5)
    _, slice_ = validation_slice(train, NetworkParams(seed=5))
    pd.testing.assert_frame_equal(objective.valid_rows, slice_)
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial(hgb.default_trial("regression"))
    study.optimize(objective, n_trials=1)
    assert study.trials[0].params == hgb.default_trial("regression")
    assert 0.5 < study.best_value <= 1.0
    assert isinstance(hgb.pruner(), optuna.pruners.NopPruner)


def test_three_classes_are_compiled_too_with_the_pipelines_probabilities(tmp_path):
    """Treelite's own softmax is float32 (6e-8 off): the sums it gives, softmaxed in
    float64, are the Pipeline's probabilities."""
    frame = rows(600, seed=6)
    frame["band"] = np.select([frame.y < -1, frame.y > 2], ["low", "high"], "mid")
    schema = Schema("band", "classification", ["x", "z"], ["kind"], classes=["high", "low", "mid"])
    pipeline = hgb.fit(schema, FAST, frame)
    model = ForestModel.load(ForestModel.build(pipeline, schema, frame).save(tmp_path / "f"))
    assert model.engine == COMPILED
    test = raw(rows(150, seed=7), schema)
    for n in (3, len(test)):
        np.testing.assert_allclose(
            model.predict_proba(test.head(n)), pipeline.predict_proba(test.head(n)), atol=1e-12
        )
        assert list(model.predict(test.head(n))) == list(pipeline.predict(test.head(n)))
