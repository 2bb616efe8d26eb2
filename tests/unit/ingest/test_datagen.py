"""The bundled stream (data/stream/): labelled batches that continue df_new.csv in time,
with customers that keep drifting and a pricing that changes where the design says."""

from itertools import pairwise

import pandas as pd
import pytest

from mlcycle.config import CURRENT_CSV, DATA_DIR, DEFAULT_TARGET
from mlcycle.ingest import datagen

BATCHES = sorted((DATA_DIR / datagen.STREAM_DIR).glob("batch_*.csv"))
PRICING = ("intercept", "income_coef", "age_coef", "smoker_effect", "sport_effect", "idf_bonus")


@pytest.fixture(scope="module")
def stream() -> list[pd.DataFrame]:
    return [pd.read_csv(path) for path in BATCHES]


def test_the_stream_holds_the_designed_batches_in_time_order():
    assert [p.name for p in BATCHES] == list(datagen.stream_batches())
    assert len(BATCHES) >= 6


def test_every_batch_has_the_bundled_columns_and_a_target_on_every_row(stream):
    columns = list(pd.read_csv(CURRENT_CSV, nrows=1).columns)
    for path, frame, rows in zip(BATCHES, stream, datagen.STREAM_ROWS, strict=True):
        assert list(frame.columns) == columns, path.name
        assert len(frame) == rows and 400 <= rows <= 800, path.name
        assert frame[DEFAULT_TARGET].notna().all(), path.name
        assert pd.api.types.is_numeric_dtype(frame[DEFAULT_TARGET]), path.name


def test_batches_are_distinct_from_each_other_and_from_df_new(stream):
    frames = [pd.read_csv(CURRENT_CSV), *stream]
    rows = [set(frame.astype(str).itertuples(index=False)) for frame in frames]
    for i in range(len(rows)):
        for j in range(i + 1, len(rows)):
            assert not rows[i] & rows[j], (i, j)


def test_customers_keep_getting_younger_from_df_new_through_every_batch(stream):
    ages = [pd.read_csv(CURRENT_CSV)["age"].mean()] + [frame["age"].mean() for frame in stream]
    assert all(later < earlier for earlier, later in pairwise(ages)), ages
    idf = [(frame["region"] == "Île-de-France").mean() for frame in stream]
    assert max(idf[-2:]) < min(idf[:2]), idf
    incomes = [frame["revenu_estime_mois"].median() for frame in stream]
    assert incomes[-1] > incomes[0] * 1.1, incomes


def test_the_design_moves_covariates_every_batch_and_pricing_only_at_repricings():
    populations = [datagen.NEW] + [
        datagen.stream_population(k) for k in range(1, len(datagen.STREAM_ROWS) + 1)
    ]
    for before, after in pairwise(populations):
        assert after.age_mean < before.age_mean
        assert after.income_level > before.income_level
        assert after.region_weights[0] < before.region_weights[0]
        assert sum(after.region_weights) == pytest.approx(1)
    changed = [
        k
        for k in range(1, len(populations))
        if any(getattr(populations[k], f) != getattr(populations[k - 1], f) for f in PRICING)
    ]
    assert changed == sorted(datagen.REPRICINGS) == [3, 5]


def test_the_repricings_show_in_the_loans(stream):
    """Batch 3 cuts every loan; from batch 5 on smokers no longer borrow ~4,000 less."""
    medians = [frame[DEFAULT_TARGET].median() for frame in stream]
    assert medians[2] < medians[1] - 1000, medians
    gaps = [
        frame.loc[frame["smoker"] == "oui", DEFAULT_TARGET].mean()
        - frame.loc[frame["smoker"] == "non", DEFAULT_TARGET].mean()
        for frame in stream
    ]
    assert all(gap < -3000 for gap in gaps[:4]), gaps
    assert all(abs(gap) < 1000 for gap in gaps[4:]), gaps
