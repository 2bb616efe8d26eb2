"""The served blend in memory: the weighted mean of its members' answers (of their class
probabilities for a classifier), saved with its members and read back the same, and a
row a member cannot read named by column."""

import numpy as np
import pandas as pd
import pytest

from mlcycle.errors import MlcycleError
from mlcycle.models.blending import slice_predictions
from mlcycle.models.families import hgb, rf
from mlcycle.models.network import NetworkModel
from mlcycle.models.served_blend import BlendModel
from mlcycle.models.served_forest import ForestModel
from mlcycle.models.serving import BadInput
from mlcycle.models.training import fit_bag
from tests.unit.networks import BIN, MULTI, REG, TINY, labelled, rows


def _forest(schema, frame, family=rf, params=None):
    params = params or (
        rf.ForestParams(n_estimators=10) if family is rf else hgb.BoostingParams(max_iter=30)
    )
    return ForestModel.build(family.fit(schema, params, frame), schema, frame)


@pytest.fixture(scope="module")
def regression_members(reg_fit):
    frame = rows(120, seed=1)
    return frame, [_forest(REG, frame), _forest(REG, frame, hgb), reg_fit[0]]


def test_a_regression_blend_answers_the_weighted_mean_of_its_members(regression_members):
    frame, members = regression_members
    blend = BlendModel(REG, members, [0.5, 0.3, 0.2], ["refit-rf", "refit-hgb", "retrain"])
    features = frame[REG.features]
    expected = sum(w * m.predict(features) for w, m in zip([0.5, 0.3, 0.2], members, strict=True))
    np.testing.assert_allclose(blend.predict(features), expected, rtol=1e-12)
    assert blend.describe() == "refit-rf:=0.5, refit-hgb:=0.3, retrain:=0.2"


def test_a_saved_blend_carries_its_members_and_answers_the_same(regression_members, tmp_path):
    frame, members = regression_members
    blend = BlendModel(REG, members, [0.6, 0.2, 0.2], ["a", "b", "c"], ["3", "4", "5"])
    loaded = BlendModel.load(blend.save(tmp_path / "blend"))
    features = frame[REG.features]
    np.testing.assert_array_equal(loaded.predict(features), blend.predict(features))
    assert loaded.versions == ["3", "4", "5"] and loaded.weights == [0.6, 0.2, 0.2]
    assert sorted(p.name for p in (tmp_path / "blend").iterdir()) == [
        "blend.json",
        "member_0",
        "member_1",
        "member_2",
    ]


def test_a_blend_carries_a_bag_of_networks_whole(tmp_path):
    """retrain registers a bag; the blend step loads it from the registry and saves it
    inside the blend: every network of the bag must go along, not the first alone."""
    frame = rows(120, seed=2)
    bag = NetworkModel.load(fit_bag(REG, TINY, frame, members=3)[0].save(tmp_path / "bag"))
    forest = _forest(REG, frame)
    blend = BlendModel(REG, [forest, bag], [0.4, 0.6], ["refit-rf", "retrain"])
    loaded = BlendModel.load(blend.save(tmp_path / "blend"))
    features = frame[REG.features]
    assert loaded.members[1].members == 3
    expected = 0.4 * forest.predict(features) + 0.6 * bag.predict(features)
    np.testing.assert_allclose(loaded.predict(features), expected, rtol=1e-6)


def test_a_row_a_member_cannot_read_is_named_by_column(regression_members):
    frame, members = regression_members
    blend = BlendModel(REG, members, [0.5, 0.3, 0.2])
    bad = frame[REG.features].head(2).astype(object)
    bad.loc[0, "x"] = "lots"
    with pytest.raises(BadInput, match="column 'x' should be numeric but holds 'lots'"):
        blend.predict(bad)


def test_a_classifier_blends_probabilities_in_its_class_order(bin_model):
    frame = labelled(BIN, n=120, seed=4)
    forest = _forest(BIN, frame)
    blend = BlendModel(BIN, [forest, bin_model], [0.7, 0.3])
    features = frame[BIN.features]
    proba = blend.predict_proba(features)
    expected = 0.7 * forest.predict_proba(features) + 0.3 * bin_model.predict_proba(features)
    np.testing.assert_allclose(proba, expected, rtol=1e-12)
    assert list(blend.predict(features)) == list(np.array(["no", "yes"])[proba.argmax(axis=1)])
    assert blend.classes_ == ["no", "yes"]


def test_a_blend_needs_a_weight_per_member_and_members_it_can_carry(regression_members, tmp_path):
    _, members = regression_members
    with pytest.raises(MlcycleError, match="one weight per member"):
        BlendModel(REG, members, [1.0])
    with pytest.raises(MlcycleError, match="cannot carry a DataFrame"):
        BlendModel(REG, [pd.DataFrame()], [1.0]).save(tmp_path / "blend")
    assert not (tmp_path / "blend").exists()


def test_a_member_whose_rows_lacked_a_class_gives_it_no_probability():
    """A rare class (weather's 'snow') can be missing from a member's training rows."""
    frame = labelled(MULTI, n=150, seed=5)
    full = _forest(MULTI, frame)
    partial = _forest(MULTI, frame[frame["y"] != 2])
    blend = BlendModel(MULTI, [full, partial], [0.5, 0.5])
    features = frame[MULTI.features]
    proba = blend.predict_proba(features)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_allclose(proba[:, 2], 0.5 * full.predict_proba(features)[:, 2])
    predictions = slice_predictions(partial.pipeline, MULTI, frame)
    assert (predictions["proba_2"] == 0).all() and predictions["proba_0"].notna().all()
