"""The trigger policy's decision: a pure function of the evidence, tested on inline dicts."""

import pytest

from mlcycle.lifecycle.trigger import DEFAULTS, decayed_since_change, decide


def _evidence(realised=(), baseline=0.93, **extra):
    return {
        "metric": "r2",
        "baseline": baseline,
        "windows": [{"score_run": f"s{i}", "realised": r} for i, r in enumerate(realised)],
        "estimates": [],
        "drift_share": None,
        "age_batches": len(realised),
        "batches_since_retrain": None,
        **extra,
    }


def test_a_healthy_champion_is_left_alone_and_the_no_says_why():
    decision = decide(_evidence([0.92, 0.93, 0.91]), "auto", {})
    assert not decision.trigger
    assert decision.reasons[0].startswith("no rule fired")
    assert "0 of the last 3 labelled windows" in decision.summary


def test_the_first_labelled_window_showing_a_relationship_change_triggers():
    decision = decide(_evidence([0.92, 0.48]), "auto", {})
    assert decision.trigger and decision.fired == ["realised_decay"]
    assert "1 of the last 2 labelled windows" in decision.reasons[0]
    assert "worst 0.480" in decision.reasons[0]


def test_decay_must_show_in_k_of_the_last_n_windows():
    thresholds = {"k": 2, "n": 3}
    assert not decide(_evidence([0.92, 0.80, 0.92]), "auto", thresholds).trigger
    assert decide(_evidence([0.80, 0.92, 0.81]), "auto", thresholds).trigger
    # Older windows than the last n do not count.
    assert not decide(_evidence([0.80, 0.80, 0.92, 0.92, 0.92]), "auto", thresholds).trigger


def test_a_drop_within_max_decay_is_noise():
    assert not decide(_evidence([0.89]), "auto", {"max_decay": 0.05}).trigger
    assert decide(_evidence([0.87]), "auto", {"max_decay": 0.05}).trigger


def test_without_a_baseline_realised_decay_abstains_and_says_so():
    decision = decide(_evidence([0.1], baseline=None), "auto", {})
    assert not decision.trigger and "no baseline" in decision.summary


def test_an_estimate_whose_whole_band_fell_triggers():
    estimate = {"estimated": 0.70, "low": 0.65, "high": 0.75, "reference": 0.93}
    decision = decide(_evidence(estimates=[estimate]), "auto", {})
    assert decision.trigger and decision.fired == ["estimated_decay"]


def test_an_estimate_whose_band_reaches_near_the_reference_does_not():
    estimate = {"estimated": 0.80, "low": 0.70, "high": 0.90, "reference": 0.93}
    assert not decide(_evidence(estimates=[estimate]), "auto", {}).trigger


def test_an_estimate_seeing_no_decay_never_vetoes_realised_decay():
    # A relationship change: the features did not move, so the estimate is as good as ever.
    estimate = {"estimated": 0.93, "low": 0.91, "high": 0.95, "reference": 0.93}
    decision = decide(_evidence([0.48], estimates=[estimate]), "auto", {})
    assert decision.trigger and decision.fired == ["realised_decay"]


def test_drift_share_above_the_limit_triggers_while_no_labels_judge_the_champion():
    decision = decide(_evidence(drift_share=0.8), "auto", {"max_drift_share": 0.5})
    assert decision.trigger and decision.fired == ["drift_share"]
    assert "80% of the features drifted" in decision.reasons[0]


def test_under_auto_labelled_windows_outrank_drift():
    decision = decide(_evidence([0.92], drift_share=0.8), "auto", {})
    assert not decision.trigger
    assert "labelled windows judge the champion" in decision.summary


def test_the_drift_policy_listens_to_drift_alone():
    assert decide(_evidence([0.92], drift_share=0.8), "drift", {}).trigger
    decayed = decide(_evidence([0.30], drift_share=0.1), "drift", {})
    assert not decayed.trigger and [r.name for r in decayed.rules] == ["drift_share"]


def test_a_champion_older_than_max_age_batches_triggers_and_zero_means_no_limit():
    old = _evidence(age_batches=31)
    assert decide(old, "auto", {"max_age": 30}).fired == ["max_age"]
    assert not decide(old, "auto", {"max_age": 0}).trigger


def test_the_cooldown_holds_a_second_label_free_trigger_back_for_cooldown_batches():
    thresholds = {"cooldown": 2}
    just_retrained = _evidence(drift_share=0.8, batches_since_retrain=1)
    decision = decide(just_retrained, "auto", thresholds)
    assert not decision.trigger
    assert decision.reasons[0].startswith("cooldown: 1 batches since the last retrain")
    assert "drift" in decision.reasons[1]
    assert decide(_evidence(drift_share=0.8, batches_since_retrain=2), "auto", thresholds).trigger
    assert decide(just_retrained, "auto", {"cooldown": 0}).trigger


def test_labels_the_last_retrain_learned_from_do_not_trigger_again():
    """The retrain at t=100 saw the bad window labelled at t=50: it is not evidence twice."""
    seen = _evidence([0.48], last_retrain=100, batches_since_retrain=1)
    seen["windows"][0]["labelled"] = 50
    decision = decide(seen, "auto", {"cooldown": 0})
    assert not decision.trigger
    assert "no window labelled since the last retrain" in decision.summary


def test_a_decayed_window_labelled_after_the_last_retrain_triggers_through_the_cooldown():
    """A retrain that promoted nothing, then the first labels of a repricing: retrain now."""
    evidence = _evidence([0.87, 0.93, 0.44], last_retrain=100, batches_since_retrain=1)
    for window, labelled in zip(evidence["windows"], (50, 150, 250), strict=True):
        window["labelled"] = labelled
    decision = decide(evidence, "auto", {"cooldown": 5})
    assert decision.trigger and decision.fired == ["realised_decay"]
    assert "1 of the last 2 labelled windows" in decision.reasons[0]


def test_the_present_is_the_newest_unbroken_streak_of_decayed_windows():
    """After a change the retrain learns from the batches since the champion last held:
    s2 held (0.90 is within 0.05 of 0.93), s3 and s4 did not; s0 decayed long ago."""
    evidence = _evidence([0.70, 0.92, 0.90, 0.40, 0.45])
    assert decayed_since_change(evidence, 0.05) == ["s3", "s4"]
    assert decayed_since_change(_evidence([0.40, 0.92]), 0.05) == []  # the newest held
    assert decayed_since_change(_evidence([0.40], baseline=None), 0.05) == []
    # windows labelled before the last retrain are what it learned from: not the present
    seen = _evidence([0.40, 0.41], last_retrain=100)
    for window, labelled in zip(seen["windows"], (50, 150), strict=True):
        window["labelled"] = labelled
    assert decayed_since_change(seen, 0.05) == ["s1"]


def test_always_retrains_on_every_new_batch_whatever_the_cooldown():
    assert decide(_evidence([0.93], batches_since_retrain=1), "always", {"cooldown": 5}).trigger
    assert decide(_evidence([0.93]), "always", {}).trigger
    none_new = decide(_evidence([0.93], batches_since_retrain=0), "always", {})
    assert not none_new.trigger and "no batch since the last retrain" in none_new.summary


def test_never_retrains_but_records_which_rules_fired():
    decision = decide(_evidence([0.48]), "never", {})
    assert not decision.trigger
    assert decision.reasons == ["policy never (rules fired: realised_decay)"]


def test_every_rule_abstains_on_an_empty_store():
    decision = decide({}, "auto", {})
    assert not decision.trigger and len(decision.rules) == 4


def test_an_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="policy must be one of auto, always, never, drift"):
        decide({}, "sometimes", {})


def test_the_defaults_cover_every_threshold():
    assert set(DEFAULTS) == {"max_decay", "k", "n", "max_drift_share", "max_age", "cooldown"}
