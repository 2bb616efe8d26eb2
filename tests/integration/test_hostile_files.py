"""The real etl and baseline commands (`python -m entrypoints.X`, a subprocess each, a
private SQLite store) on the files users actually have: the bundled data exported the
way a French spreadsheet does, infinities and placeholders in numeric columns, and the
mistakes that must stop with one line naming the file and column."""

import json
import re

import mlflow
import numpy as np
import pandas as pd
import pytest

from mlcycle import config
from mlcycle.errors import MlcycleError
from mlcycle.ingest import csvread, data
from mlcycle.ingest.datasets import load_splits
from mlcycle.models import scoring
from mlcycle.monitoring import drift
from mlcycle.steps import score as score_step
from mlcycle.steps.etl import EtlParams, prepare
from tests.conftest import ROOT, assert_ok, mlflow_run, run_step

pytestmark = pytest.mark.integration

NBSP = "\u00a0"
NUMERIC = ["age", "taille", "poids", "revenu_estime_mois", "montant_pret"]


def _etl_runs():
    return mlflow.search_runs(
        search_all_experiments=True,
        output_format="list",
        filter_string=f"tags.`{config.STEP_TAG}` = 'etl'",
    )


def _raw(name: str) -> pd.DataFrame:
    """A bundled file as the strings it holds."""
    return pd.read_csv(ROOT / "data" / name, dtype=str, keep_default_na=False)


def _french(text: str) -> str:
    """'12345.5' -> '12 345,5' with a non-breaking space, as a French spreadsheet writes it."""
    if not text:
        return text
    whole, _, decimals = text.partition(".")
    grouped = f"{int(whole):,}".replace(",", NBSP)
    return grouped + ("," + decimals if decimals else "")


def test_a_french_export_and_quoted_decimal_commas_read_as_the_bundled_files(
    tracking_uri, tmp_path
):
    """Reference: `;`, decimal comma, grouped thousands, cp1252. Current: comma-separated,
    UTF-8 with a BOM, every number quoted with a decimal comma. The etl run's splits are
    exactly those of the bundled files."""
    old, new = _raw("df_old.csv"), _raw("df_new.csv")
    for col in NUMERIC:
        old[col] = old[col].map(_french)
        new[col] = new[col].str.replace(".", ",", regex=False)
    reference, current = tmp_path / "ancien.csv", tmp_path / "nouveau.csv"
    old.to_csv(reference, sep=";", index=False, encoding="cp1252")
    current.write_text(
        "\ufeff" + new.to_csv(index=False, quoting=1, lineterminator="\r\n"), encoding="utf-8"
    )

    result = run_step("etl", tracking_uri, "--reference", str(reference), "--current", str(current))
    assert_ok(result)
    lines = {
        role: [x for x in result.stderr.splitlines() if f"{role} file {path}" in x]
        for role, path in (("reference", reference), ("current", current))
    }
    assert re.search(r"INFO .*cp1252.*delimiter ';'.*decimal mark ','", lines["reference"][0])
    assert re.search(r"INFO .*utf-8.*delimiter ','.*decimal mark ','", lines["current"][0])
    (run,) = _etl_runs()
    schema, splits = load_splits(run.info.run_id)
    expected = prepare(EtlParams())
    assert schema.to_dict() == expected.schema.to_dict()
    for name, frame in splits.items():
        pd.testing.assert_frame_equal(frame, getattr(expected.splits, name))


def _with(frame: pd.DataFrame, column: str, values: list[str], every: int = 97) -> pd.DataFrame:
    frame = frame.copy()
    for i, value in enumerate(values):
        frame.loc[5 + i * every, column] = value
    return frame


def test_infinities_and_placeholders_pass_etl_baseline_and_drift(tracking_uri, tmp_path):
    old = _with(_raw("df_old.csv"), "poids", ["inf", "?", "-inf", "n/a", "1e999"])
    old = _with(old, "revenu_estime_mois", ["#VALUE!", "-", "NA"], every=31)
    new = _with(_raw("df_new.csv"), "poids", ["Infinity", "-", "N/A"])
    new = _with(new, "revenu_estime_mois", ["-Infinity", "null"], every=53)
    old.to_csv(tmp_path / "old.csv", index=False)
    new.to_csv(tmp_path / "new.csv", index=False)

    args = ("--reference", str(tmp_path / "old.csv"), "--current", str(tmp_path / "new.csv"))
    assert_ok(run_step("etl", tracking_uri, *args))
    (run,) = _etl_runs()
    schema, splits = load_splits(run.info.run_id)
    assert schema.numeric == ["age", "taille", "poids", "revenu_estime_mois"]
    quality = json.loads(
        mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/datasets/quality.json")
    )
    assert quality["read_as_missing"] == {
        "reference": {
            "placeholders": {"poids": 2, "revenu_estime_mois": 3},
            "infinite": {"poids": 3},
        },
        "current": {
            "placeholders": {"poids": 2, "revenu_estime_mois": 1},
            "infinite": {"poids": 1, "revenu_estime_mois": 1},
        },
    }
    assert run.data.metrics["reference_infinite_as_missing"] == 3
    assert run.data.metrics["current_placeholders_as_missing"] == 3
    for name, frame in splits.items():
        assert not np.isinf(frame[schema.numeric].to_numpy(dtype=float)).any(), name

    result = run_step(
        "baseline", tracking_uri, "--etl-run", run.info.run_id, "--n-estimators", "10"
    )
    assert_ok(result)
    (base,) = mlflow.search_runs(
        search_all_experiments=True,
        output_format="list",
        filter_string=f"tags.`{config.STEP_TAG}` = 'baseline'",
    )
    assert np.isfinite(base.data.metrics["current_test_r2"])

    measured = drift.run_drift(*drift.reference_and_current(splits), schema)
    scores = {c.column: c.score for c in measured.columns if c.column in schema.features}
    assert set(scores) == set(schema.features) and np.isfinite(list(scores.values())).all()


def _stray(tmp_path, name):
    frame = _with(_raw(name), "poids", ["lourd", "?", "léger", "lourd", "x"], every=7)
    frame.to_csv(tmp_path / f"stray_{name}", index=False)
    return tmp_path / f"stray_{name}"


def _words(tmp_path, name):
    frame = _raw(name)
    frame["poids"] = np.where(np.arange(len(frame)) % 2, frame["poids"], "lourd")
    frame.to_csv(tmp_path / f"words_{name}", index=False)
    return tmp_path / f"words_{name}"


def _infinite_target(tmp_path, name):
    frame = _with(_raw(name), "montant_pret", ["inf"])
    frame.to_csv(tmp_path / f"inf_{name}", index=False)
    return tmp_path / f"inf_{name}"


def _two_tables(tmp_path, name):
    path = tmp_path / "two.csv"
    path.write_text("a;b,montant_pret\n1;2,3\n4;5,6\n")
    return path


@pytest.mark.parametrize(
    ("role", "make", "message"),
    [
        (
            "reference",
            _stray,
            "column 'poids' of the reference file {path} .*'lourd', 'léger', 'x'.*4 such values",
        ),
        (
            "current",
            _stray,
            "column 'poids' of the current file {path} .*'lourd', 'léger', 'x'.*4 such values",
        ),
        (
            "current",
            _words,
            "column 'poids' of the current file {path} should be numeric, as in the reference "
            "file {reference}, but holds 'lourd'",
        ),
        (
            "reference",
            _words,
            "column 'poids' of the current file {current} holds only numbers .*"
            "text in the reference file {path}",
        ),
        ("current", _infinite_target, "target column 'montant_pret' of the current file {path}"),
        ("reference", _two_tables, "reference file {path} is ambiguous"),
    ],
)
def test_hostile_files_stop_the_etl_with_one_line(tracking_uri, tmp_path, role, make, message):
    names = {"reference": "df_old.csv", "current": "df_new.csv"}
    path = make(tmp_path, names[role])
    paths = {r: ROOT / "data" / n for r, n in names.items()} | {role: path}
    result = run_step(
        "etl",
        tracking_uri,
        "--reference",
        str(paths["reference"]),
        "--current",
        str(paths["current"]),
    )
    assert result.returncode == 2, result.stderr[-3000:]
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("mlcycle error:")]
    pattern = message.format(
        path=re.escape(str(path)),
        reference=re.escape(str(paths["reference"])),
        current=re.escape(str(paths["current"])),
    )
    assert re.search(pattern, line), line
    assert "Traceback" not in result.stderr
    assert not [r for r in _etl_runs() if r.info.status == "FINISHED"]


# ------------------------------------------------- score reads what etl reads (one reader)


def _hostile_files(tmp_path) -> dict:
    """Every hostile file above, by name."""
    old, new = _raw("df_old.csv"), _raw("df_new.csv")
    french = old.copy()
    quoted = new.copy()
    for col in NUMERIC:
        french[col] = french[col].map(_french)
        quoted[col] = quoted[col].str.replace(".", ",", regex=False)
    files = {"french": tmp_path / "ancien.csv", "quoted": tmp_path / "nouveau.csv"}
    french.to_csv(files["french"], sep=";", index=False, encoding="cp1252")
    files["quoted"].write_text(
        "\ufeff" + quoted.to_csv(index=False, quoting=1, lineterminator="\r\n"), encoding="utf-8"
    )
    placeholders = _with(old, "poids", ["inf", "?", "-inf", "n/a", "1e999"])
    placeholders = _with(placeholders, "revenu_estime_mois", ["#VALUE!", "-", "NA"], every=31)
    files["placeholders"] = tmp_path / "placeholders.csv"
    placeholders.to_csv(files["placeholders"], index=False)
    for make in (_stray, _words, _infinite_target, _two_tables):
        files[make.__name__.strip("_")] = make(tmp_path, "df_new.csv")
    return files


def _by_etl(path, schema):
    """etl's reader, then what conform does to a feature: ±inf missing, text as strings."""
    frame = data.read_csv(path, "current")
    if not all(csvread.is_number(frame[c].dropna()).all() for c in schema.numeric):
        words = [c for c in schema.numeric if not pd.api.types.is_numeric_dtype(frame[c])]
        raise MlcycleError(f"column {words[0]!r} of the current file {path} is not numeric")
    out = frame[schema.features].copy()
    for col in schema.numeric:
        out[col] = out[col].astype("float64").replace([np.inf, -np.inf], np.nan)
    for col in schema.categorical:
        out[col] = out[col].astype(object).where(out[col].notna(), None)
    return out


def _by_score(path, schema):
    inputs = scoring.Inputs(
        features=schema.features, numeric=schema.numeric, categorical=schema.categorical
    )
    chunks = scoring.conformed_chunks(path, inputs, chunk_rows=97)
    return pd.concat([features for _, _, features in chunks], ignore_index=True)


def test_every_hostile_file_reads_in_score_exactly_as_in_etl_or_both_refuse_it(tmp_path):
    schema = prepare(EtlParams()).schema
    compared = refused = 0
    for name, path in _hostile_files(tmp_path).items():
        try:
            expected = _by_etl(path, schema)
        except MlcycleError as etl_error:
            with pytest.raises(MlcycleError) as score_error:
                _by_score(path, schema)
            (line,) = str(score_error.value).splitlines()
            assert str(path) in line, (name, line)
            column = re.search(r"column '(\w+)'", str(etl_error))
            if column:  # score names the column and the row
                assert f"column {column.group(1)!r}" in line and " at row " in line, line
            refused += 1
            continue
        pd.testing.assert_frame_equal(_by_score(path, schema), expected, obj=name)
        compared += 1
    assert (compared, refused) == (4, 3)  # the infinite target is etl's to refuse only


def test_score_through_mlflow_run_reads_a_french_export_with_infinities_as_etl_would(
    tracking_uri, tmp_path
):
    """The champion scores batch_02 exported the French way (cp1252, `;`, decimal commas,
    grouped thousands) with infinities and placeholders in poids: the same predictions
    as on the plain file with those cells empty, the cells counted in the run."""
    from tests.integration.test_lifecycle import _champion, _etl, _forest

    _champion(_forest(_etl()))
    batch = _raw("stream/batch_02.csv")
    # 1e999 overflows to inf: missing, as etl reads it.
    odd = _with(batch, "poids", ["inf", "-Infinity", "1e999", "?", "#N/A", "NA", "n/a"], 80)
    french = odd.copy()
    for col in NUMERIC:
        french[col] = french[col].map(
            lambda v: _french(v) if v[:1].isdigit() and "e" not in v else v
        )
    exported = tmp_path / "lot.csv"
    french.to_csv(exported, sep=";", index=False, encoding="cp1252")
    plain = odd.copy()
    plain.loc[[5 + i * 80 for i in range(7)], "poids"] = ""
    (tmp_path / "plain.csv").write_text(plain.to_csv(index=False))

    output = tmp_path / "lot.parquet"
    result = mlflow_run("score", tracking_uri, {"input": str(exported), "output": str(output)})
    assert_ok(result)
    with mlflow.start_run():
        expected = score_step.execute(
            score_step.ScoreParams(
                input=str(tmp_path / "plain.csv"), output=str(tmp_path / "plain.parquet")
            )
        )
    got, want = pd.read_parquet(output), pd.read_parquet(expected.output)
    assert got["nom"].tolist() == batch["nom"].tolist()
    np.testing.assert_allclose(got["prediction"], want["prediction"])
    run = [r for r in _score_runs() if r.data.tags["mlcycle.output"] == str(output)][0]
    assert run.data.metrics["input_infinite_as_missing"] == 3
    assert run.data.metrics["input_placeholders_as_missing"] == 4


def _score_runs():
    return mlflow.search_runs(
        search_all_experiments=True,
        output_format="list",
        filter_string=f"tags.`{config.STEP_TAG}` = 'score'",
    )
