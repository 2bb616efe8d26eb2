"""retrain's candidates: which are tried, that they are judged on current train rows only
(rows their early stopping never watched), and that the choice follows the drift on
crafted data (real networks, a few epochs)."""

import numpy as np
import pandas as pd
import pytest

from mlcycle.errors import MlcycleError
from mlcycle.ingest.data import Schema
from mlcycle.ingest.split import make_splits
from mlcycle.models.candidates import Candidate, Trained, Trainer, choose, propose
from mlcycle.models.network import NetworkParams
from mlcycle.models.training import fit_network
from mlcycle.monitoring.metrics import evaluate

# One number and a 20-level category: the reference rows teach the level effects
# (15 rows a level), which 40 current rows (2 a level) cannot; a few epochs suffice.
SCHEMA = Schema(target="y", task="regression", numeric=["x"], categorical=["c"])
LEVELS = np.array([f"k{i}" for i in range(20)], dtype=object)
EFFECT = np.random.default_rng(0).normal(0, 3000, 20)
QUICK = NetworkParams(
    hidden_units=(16,),
    epochs=15,
    batch_size=8,
    learning_rate=0.03,
    patience=0,
    seed=3,
    validation_share=0.25,
)


def rows(n: int, seed: int, *, sign: float = 1.0, offset: float = 0.0) -> pd.DataFrame:
    """y = 20000 + sign * (1000 x + level effect) + offset + noise (sd 400)."""
    rng = np.random.default_rng(seed)
    x, level = rng.normal(size=n), rng.integers(0, 20, n)
    y = 20_000 + sign * (1000 * x + EFFECT[level]) + offset + rng.normal(0, 400, n)
    return pd.DataFrame({"x": x, "c": LEVELS[level], "y": y})


def _choice(reference, current, strategy="auto", window="auto", base=None) -> str:
    trainer = Trainer(SCHEMA, QUICK, reference, current, base)
    trained = [trainer.train(c) for c in propose(strategy, window, base is not None)]
    best, reason = choose(trained, SCHEMA.task, trainer.truth)
    assert "on 10 current train rows" in reason
    return best.candidate.name


# ---------------------------------------------------------------- which candidates


def test_auto_tries_every_strategy_on_current_rows_and_a_fresh_network_on_all():
    names = [c.name for c in propose("auto", "auto", can_finetune=True)]
    assert names == ["finetune/current", "transfer/current", "scratch/current", "scratch/all"]
    assert [c.name for c in propose("auto", "auto", can_finetune=False)] == [
        "transfer/current",
        "scratch/current",
        "scratch/all",
    ]
    assert [c.name for c in propose("scratch", "auto", True)] == ["scratch/current", "scratch/all"]
    assert [c.name for c in propose("auto", "all", True)] == [
        "finetune/all",
        "transfer/all",
        "scratch/all",
    ]
    assert propose("finetune", "current", True) == [Candidate("finetune", "current")]


def _trained(name: str, r2: float) -> Trained:
    strategy, window = name.split("/")
    return Trained(
        Candidate(strategy, window),
        model=None,
        params=QUICK,
        history={},
        metrics={"validation_r2": r2},
        train_rows=100,
        validation_rows=25,
    )


def test_choose_keeps_the_best_validation_score_and_the_earlier_on_a_tie():
    tried = [_trained("transfer/current", 0.80), _trained("scratch/all", 0.85)]
    best, reason = choose(tried, "regression")
    assert best is tried[1]
    assert reason == (
        "scratch/all has the best validation r2 on 25 current train rows: 0.8500 "
        "(others: transfer/current 0.8000)"
    )
    tie = [_trained("transfer/current", 0.8), _trained("scratch/current", 0.8)]
    assert choose(tie, "regression")[0] is tie[0]


def _predicting(name: str, truth: np.ndarray, extra_sd: float, seed: int) -> Trained:
    """A candidate whose errors are a shared error (sd 0.5) plus its own (extra_sd)."""
    shared = np.random.default_rng(99).normal(0, 0.5, len(truth))
    predictions = truth + shared + np.random.default_rng(seed).normal(0, extra_sd, len(truth))
    trained = _trained(name, evaluate("regression", truth, predictions)["r2"])
    trained.predictions = predictions
    return trained


def test_a_candidate_the_slice_cannot_tell_from_the_best_is_kept_if_it_learns_from_more_rows():
    truth = np.random.default_rng(0).normal(0, 1, 200)
    best = _predicting("scratch/current", truth, 0.1, seed=1)
    close = _predicting("scratch/all", truth, 0.1, seed=3)
    assert best.score("regression") > close.score("regression")
    kept, reason = choose([best, close], "regression", truth)
    assert kept is close
    assert reason.startswith(
        "scratch/all learns from more rows than scratch/current and the validation slice "
        "cannot tell them apart: r2 "
    )
    assert choose([best, close], "regression")[0] is best  # without the slice: the score
    worse = _predicting("scratch/all", truth, 0.6, seed=2)
    assert choose([best, worse], "regression", truth)[0] is best
    # Only a candidate that learns from more rows than the best is preferred to it.
    leader = _predicting("transfer/current", truth, 0.1, seed=1)
    fewer = _predicting("scratch/current", truth, 0.1, seed=3)
    assert choose([leader, fewer], "regression", truth)[0] is leader


def test_no_test_row_is_ever_in_the_validation_slice():
    """The slice the candidates are judged on is drawn from current train rows only."""
    frame = rows(200, 1).assign(row_id=range(200))
    current = rows(120, 2).assign(row_id=range(1000, 1120))
    splits, _ = make_splits(frame, current, SCHEMA, 0.2, seed=5)
    trainer = Trainer(SCHEMA, QUICK, splits.reference_train, splits.current_train)
    judged, fitted = set(trainer.validation["row_id"]), set(trainer.fit_rows["row_id"])
    assert len(judged) == 24  # 25 % of the 96 current train rows
    assert judged | fitted == set(splits.current_train["row_id"]) and not judged & fitted
    for test in (splits.current_test, splits.reference_test):
        assert not judged & set(test["row_id"])
    assert not judged & set(splits.reference_train["row_id"])


def test_the_judged_networks_stop_on_rows_of_their_own_not_on_the_judging_slice():
    """Early stopping picks an epoch by its slice's loss: the slice that judges a
    candidate must not be that one, or it flatters the candidate it judges."""
    frame = rows(200, 1).assign(row_id=range(200))
    current = rows(120, 2).assign(row_id=range(1000, 1120))
    splits, _ = make_splits(frame, current, SCHEMA, 0.2, seed=5)
    trainer = Trainer(SCHEMA, QUICK, splits.reference_train, splits.current_train)
    judged, fitted = set(trainer.validation["row_id"]), set(trainer.fit_rows["row_id"])
    stop, fit = set(trainer.stop_rows["row_id"]), set(trainer.stop_fit["row_id"])
    assert len(stop) == 18  # 25 % of the 72 current train rows left
    assert stop | fit == fitted and not stop & fit
    assert not (stop | fit) & judged


def test_a_choice_needs_a_validation_slice():
    no_slice = NetworkParams(patience=0, validation_share=0.0)
    trainer = Trainer(SCHEMA, no_slice, rows(50, 1), rows(20, 2))
    with pytest.raises(MlcycleError, match="there is none .validation_share 0.0"):
        trainer.check_choice(propose("auto", "auto", False))
    trainer.check_choice(propose("scratch", "current", False))  # no choice: no slice needed


# ---------------------------------------------------------------- the choice follows the drift


@pytest.mark.integration  # real networks, Evidently runs or stores: seconds; `make test`
def test_a_champion_network_that_is_already_right_is_fine_tuned():
    champion = fit_network(SCHEMA, QUICK, rows(300, 7, sign=-1))[0]
    assert _choice(rows(300, 1), rows(40, 2, sign=-1), base=champion) == "finetune/current"


@pytest.mark.integration  # real networks, Evidently runs or stores: seconds; `make test`
def test_a_relationship_that_moved_by_an_offset_is_transferred():
    # The level effects hold, every loan moved by 2000: learnt from the reference rows,
    # corrected on the current ones.
    assert _choice(rows(300, 1), rows(40, 2, offset=2000)) == "transfer/current"


@pytest.mark.parametrize(
    ("current", "expected"),
    [(rows(40, 2), "scratch/all"), (rows(40, 2, sign=-1), "scratch/current")],
    ids=["unchanged relationship: every row", "total drift: current rows only"],
)
@pytest.mark.integration  # real networks, Evidently runs or stores: seconds; `make test`
def test_window_auto_takes_every_row_unless_the_relationship_changed(current, expected):
    assert _choice(rows(300, 1), current, strategy="scratch") == expected


@pytest.mark.integration  # real networks, Evidently runs or stores: seconds; `make test`
def test_a_transfer_candidate_trains_its_reference_network_once():
    trainer = Trainer(SCHEMA, QUICK, rows(100, 1), rows(40, 2))
    first = trainer.train(Candidate("transfer", "current"))
    assert first.pretrain == {"pretrain_rows": 100.0, "pretrain_epochs": 15.0}
    reference = trainer.reference_network()[0]
    trainer.train(Candidate("transfer", "all"))
    assert trainer.reference_network()[0] is reference
    assert first.train_rows == 40 and first.validation_rows == 10


@pytest.mark.integration  # real networks, Evidently runs or stores: seconds; `make test`
def test_the_kept_candidate_is_refitted_on_the_rows_it_is_registered_with():
    trainer = Trainer(SCHEMA, QUICK, rows(100, 1), rows(40, 2))
    judged = trainer.train(Candidate("scratch", "current"))
    kept = trainer.refit(judged)
    assert kept.model is not judged.model
    # The judged figures stay: the refitted network has seen the slice.
    assert kept.metrics == judged.metrics and kept.predictions is judged.predictions
    assert (kept.train_rows, kept.validation_rows) == (40, 10)
    # Its early stopping watched the validation slice: the loss there is its val_loss.
    features = trainer.validation[SCHEMA.features]
    scaled = (trainer.validation[SCHEMA.target] - kept.model.target_mean) / kept.model.target_scale
    raw = kept.model.raw_output(features)
    loss = float(np.mean((raw.ravel() - scaled.to_numpy()) ** 2))
    assert loss == pytest.approx(kept.history["val_loss"][-1], rel=1e-3)


@pytest.mark.integration  # real networks, Evidently runs or stores: seconds; `make test`
def test_the_kept_candidate_is_judged_and_registered_as_a_bag():
    trainer = Trainer(SCHEMA, QUICK, rows(100, 1), rows(40, 2), members=3)
    judged = trainer.train(Candidate("scratch", "current"))
    one = judged.metrics
    bagged = trainer.bag(judged)
    assert bagged.model.members == 3
    # Judged as the bag: its slice figures and predictions are the bag's own.
    features = trainer.validation[SCHEMA.features]
    np.testing.assert_allclose(bagged.predictions, bagged.model.predict(features))
    assert bagged.metrics != one
    kept = trainer.refit(bagged)
    assert kept.model is not bagged.model and kept.model.members == 3
    # One network asked for: nothing more is trained.
    single = Trainer(SCHEMA, QUICK, rows(100, 1), rows(40, 2))
    judged = single.train(Candidate("scratch", "current"))
    assert single.bag(judged) is judged and single.refit(judged).model.members == 1
