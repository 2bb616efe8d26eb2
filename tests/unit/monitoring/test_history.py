"""The history of a model's monitor runs, built from run-shaped objects (no store)."""

from pathlib import Path
from types import SimpleNamespace

import matplotlib.figure

from mlcycle import replay
from mlcycle.monitoring import charts, history, tables


def _run(run_id, start, metrics=None, tags=None):
    return SimpleNamespace(
        info=SimpleNamespace(run_id=run_id, start_time=start),
        data=SimpleNamespace(metrics=metrics or {}, tags=tags or {}),
    )


RUNS = [
    _run(
        "b",
        2_000,
        {"drift_share": 0.5, "drift_score.age": 0.01, "champion_current_test_r2": 0.7},
        {"mlcycle.current_data": "/x/data/stream/batch_01.csv", history.DECISION_TAG: "promoted"},
    ),
    _run(
        "a",
        1_000,
        {
            "drift_share": 0.1,
            "drift_score.age": 0.4,
            "drift_score.region": 0.9,
            "champion_current_test_r2": 0.8,
            "challenger_current_test_r2": 0.85,
        },
        {"mlcycle.current_data": "data/df_new.csv", history.DECISION_TAG: "not_promoted"},
    ),
]


def test_entries_are_oldest_first_with_drift_scores_metrics_and_decision():
    entries = history.entries(RUNS, "r2")
    assert [e["run_id"] for e in entries] == ["a", "b"]
    first, second = entries
    assert first["drift_scores"] == {"age": 0.4, "region": 0.9}
    assert first["champion"] == 0.8 and first["challenger"] == 0.85
    assert second["challenger"] is None  # no challenger scored in that run
    assert second["decision"] == "promoted" and second["drift_share"] == 0.5
    assert first["time"].startswith("1970-01-01T00:00:01")
    assert history.columns(entries) == ["age", "region"]
    assert [history.label(e, i) for i, e in enumerate(entries)] == ["df_new", "batch_01"]


def test_each_drift_score_keeps_the_real_column_name_beside_its_metric_key():
    odd = "revenu (€/mois)"  # refused in a metric name: logged shortened, with a hash
    key = tables.metric_safe(odd).removeprefix(history.DRIFT_SCORE_PREFIX)
    assert key != odd
    run = _run("c", 3_000, {f"drift_score.{key}": 0.2, "drift_score.age": 0.3})
    (entry,) = history.entries([run], "r2", ["age", odd])
    assert entry["drift_scores"] == {"age": 0.3, key: 0.2}
    assert entry["drift_columns"] == {"age": "age", key: odd}
    (unknown,) = history.entries([run], "r2")  # names not known: the key stands for itself
    assert unknown["drift_columns"] == {"age": "age", key: key}


def test_a_run_without_labels_is_marked_estimated_and_drawn_apart():
    unlabelled = _run(
        "c",
        3_000,
        {"drift_share": 0.2, "estimated_r2": 0.6, "estimated_r2_low": 0.55},
        {history.LABELS_TAG: "absent"},
    )
    entries = history.entries([*RUNS, unlabelled], "r2")
    last = entries[-1]
    assert (last["labels"], last["decision"], last["champion"]) == ("absent", "no labels", None)
    assert (last["estimated"], last["estimated_low"], last["estimated_high"]) == (0.6, 0.55, None)
    assert entries[0]["labels"] == "present" and entries[0]["estimated"] is None
    fig = charts.monitor_history_figure(entries)
    labels = [t.get_text() for t in fig.axes[2].get_legend().get_texts()]
    assert "champion, estimated (no labels)" in labels
    charts.close(fig)


def test_history_figure_draws_share_heatmap_and_metrics():
    fig = charts.monitor_history_figure(history.entries(RUNS, "r2"))
    assert isinstance(fig, matplotlib.figure.Figure) and len(fig.axes) == 4  # + colorbar
    heat = fig.axes[1]
    assert [t.get_text() for t in heat.get_yticklabels()] == ["age", "region"]
    charts.close(fig)
    assert charts.monitor_history_figure([]) is None


def test_a_long_history_keeps_its_run_labels_readable():
    many = [history.entry(_run(str(i), i, {"drift_share": 0.1}, {}), "r2") for i in range(60)]
    fig = charts.monitor_history_figure(many)
    labels = [t for t in fig.axes[2].get_xticklabels() if t.get_text()]
    assert len(labels) <= charts.MAX_RUN_LABELS
    charts.close(fig)


def test_replay_pairs_each_file_with_the_one_before():
    files = [Path(n) for n in ("old", "new", "b1", "b2")]
    assert replay.pairs(files[:2], files[2:]) == [
        (files[0], files[1]),
        (files[1], files[2]),
        (files[2], files[3]),
    ]


def test_the_bundled_stream_is_found_in_order():
    found = replay.batches()
    assert len(found) >= 6 and found == sorted(found)


def test_a_batch_estimated_then_labelled_shows_both_figures_side_by_side():
    """The newest feedback of a batch wins; a batch no label reached keeps only its
    estimate; a labelled monitor run has no realised figure of its own."""
    runs = [
        _run(
            "u1",
            3_000,
            {"estimated_r2": 0.80},
            {history.LABELS_TAG: "absent", "mlcycle.score_run": "s1"},
        ),
        _run(
            "u2",
            4_000,
            {"estimated_r2": 0.85},
            {history.LABELS_TAG: "absent", "mlcycle.score_run": "s2"},
        ),
    ]
    feedback = [
        _run(
            "f2", 6_000, {"realised_r2": 0.47, "label_coverage": 1.0}, {"mlcycle.score_run": "s1"}
        ),
        _run(
            "f1", 5_000, {"realised_r2": 0.50, "label_coverage": 0.4}, {"mlcycle.score_run": "s1"}
        ),
        _run("f3", 5_500, {"label_coverage": 1.0}, {"mlcycle.score_run": "s2"}),  # no r2
    ]
    entries = history.with_realised(history.entries([*RUNS, *runs], "r2"), feedback, "r2")
    by_run = {e["run_id"]: e for e in entries}
    assert (by_run["u1"]["estimated"], by_run["u1"]["realised"]) == (0.80, 0.47)
    assert by_run["u1"]["label_coverage"] == 1.0
    assert (by_run["u2"]["realised"], by_run["u2"]["label_coverage"]) == (None, None)
    assert all(e["realised"] is None for e in entries if e["labels"] == "present")
    fig = charts.monitor_history_figure(entries)
    labels = [t.get_text() for t in fig.axes[2].get_legend().get_texts()]
    assert "champion, realised (labels came later)" in labels
