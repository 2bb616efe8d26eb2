"""The history of a model's monitor runs, built from run-shaped objects (no store)."""

from pathlib import Path
from types import SimpleNamespace

import matplotlib.figure

from mlcycle import replay
from mlcycle.monitoring import charts, history


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
