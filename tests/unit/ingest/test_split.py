import numpy as np
import pandas as pd
import pytest

from mlcycle.errors import MlcycleError
from mlcycle.ingest.data import Schema
from mlcycle.ingest.split import make_splits, row_keys, split_frame

REG = Schema(target="y", task="regression", numeric=["x"], categorical=["c"])
CLF = Schema(target="y", task="classification", numeric=["x"], categorical=["c"])


def frame(rows=100, seed=0, labels=None):
    rng = np.random.default_rng(seed)
    y = labels if labels is not None else rng.normal(size=rows)
    return pd.DataFrame({"x": rng.normal(size=rows), "c": rng.choice(["a", "b"], rows), "y": y})


def test_sizes_and_seed_determinism():
    train, test = split_frame(frame(), REG, 0.2, seed=7)
    again, _ = split_frame(frame(), REG, 0.2, seed=7)
    other, _ = split_frame(frame(), REG, 0.2, seed=8)
    assert (len(train), len(test)) == (80, 20)
    pd.testing.assert_frame_equal(train, again)
    assert not train.equals(other)


def test_no_feature_row_of_a_test_split_is_in_any_train_split():
    ref = frame(200, seed=1)
    # Duplicate rows, within and across files: the leak the brief admitted to.
    ref = pd.concat([ref, ref.head(40)], ignore_index=True)
    cur = pd.concat([frame(200, seed=2), ref.head(30)], ignore_index=True)
    splits, removed = make_splits(ref, cur, REG, 0.2, seed=42)
    train = set(row_keys(splits.reference_train, REG.features)) | set(
        row_keys(splits.current_train, REG.features)
    )
    for name in ("reference_test", "current_test"):
        assert not set(row_keys(getattr(splits, name), REG.features)) & train
    assert sum(removed.values()) > 0


def test_coarse_features_that_carry_different_targets_stay_in_the_test_splits():
    # A wage survey's kind of columns: years of education and a category, each combination
    # shared by many people with their own wages. Dropping every repeated feature row left
    # a few unusual rows of each test split; a copied record is still dropped.
    rng = np.random.default_rng(0)

    def survey(rows, seed):
        r = np.random.default_rng(seed)
        x = r.integers(8, 18, rows).astype(float)
        return pd.DataFrame(
            {"x": x, "c": r.choice(["a", "b"], rows), "y": 3 * x + r.normal(size=rows)}
        )

    ref, cur = survey(400, 1), survey(400, 2)
    copy = pd.DataFrame({"x": [99.5], "c": ["a"], "y": [rng.normal()]})
    cur = pd.concat([cur, copy, copy, copy, copy, copy, copy, copy, copy], ignore_index=True)
    splits, removed = make_splits(ref, cur, REG, 0.2, seed=42)
    assert len(splits.reference_test) == 80 and removed["reference_test"] == 0
    # The copied record: whatever lands in a test split while a train split holds it goes.
    test_copies = (splits.current_test["x"] == 99.5).sum()
    assert removed["current_test"] > 0 and test_copies == 0
    assert len(splits.current_test) + removed["current_test"] == 82


def test_a_data_set_of_categories_only_keeps_test_rows_instead_of_failing():
    # Class, age group and sex: every feature row repeats, with both outcomes.
    rng = np.random.default_rng(3)
    schema = Schema(target="y", task="classification", numeric=[], categorical=["k", "g"])

    def people(rows):
        k, g = rng.choice(["1st", "2nd", "3rd"], rows), rng.choice(["adult", "child"], rows)
        y = np.where(rng.random(rows) < np.where(k == "1st", 0.6, 0.3), "yes", "no")
        return pd.DataFrame({"k": k, "g": g, "y": y})

    splits, removed = make_splits(people(500), people(500), schema, 0.2, seed=0)
    assert removed == {"reference_test": 0, "current_test": 0}
    assert len(splits.current_test) == 100


def test_classification_split_is_stratified():
    """10 % rare class: every seed puts exactly 2 of its 10 rows in the 20-row test split
    (a plain random split gives 2 about a third of the time)."""
    labels = np.array(["a"] * 90 + ["b"] * 10)
    for seed in range(20):
        train, test = split_frame(frame(100, labels=labels), CLF, 0.2, seed=seed)
        assert (test["y"] == "b").sum() == 2 and (train["y"] == "b").sum() == 8, seed


@pytest.mark.parametrize("test_size", [0, 1, 1.5, -0.1])
def test_bad_test_size_names_the_parameter(test_size):
    with pytest.raises(MlcycleError, match="test_size"):
        split_frame(frame(), REG, test_size, seed=0)
