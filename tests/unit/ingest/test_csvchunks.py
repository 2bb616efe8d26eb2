"""score's reader: etl's rules (`csvread`) applied chunk by chunk."""

import numpy as np
import pandas as pd
import pytest

from mlcycle.errors import MlcycleError
from mlcycle.ingest import csvchunks, data


def _write(tmp_path, name, text, encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def _read(path, numeric, categorical=(), chunk_rows=3):
    """Every chunk's columns as score types them, concatenated."""
    dialect = csvchunks.sniff(path)
    frames, counts = [], {"placeholders": 0, "infinite": 0}
    first = 0
    for chunk in csvchunks.read_chunks(path, dialect, [*numeric, *categorical], chunk_rows):
        out = {}
        for col in numeric:
            read = csvchunks.numbers(chunk[col], f"input file {path}", first)
            out[col] = read.values
            counts["placeholders"] += read.placeholders
            counts["infinite"] += read.infinite
        out |= {col: csvchunks.text(chunk[col]) for col in categorical}
        frames.append(pd.DataFrame(out))
        first += len(chunk)
    return pd.concat(frames, ignore_index=True), counts


def test_a_french_cp1252_export_reads_as_etl_reads_it(tmp_path):
    text = "nom;âge;revenu\nHélène;31;1\u00a0234,5\nZoé;40,5;2\u00a0000\nLéa;?;900,25\n"
    path = _write(tmp_path, "fr.csv", text, "cp1252")
    dialect = csvchunks.sniff(path)
    assert (dialect.encoding, dialect.delimiter) == ("cp1252", ";")
    assert dialect.columns == ["nom", "âge", "revenu"]
    frame, counts = _read(path, ["âge", "revenu"], ["nom"], chunk_rows=2)
    assert frame["âge"].tolist()[:2] == [31.0, 40.5] and np.isnan(frame["âge"][2])
    assert frame["revenu"].tolist() == [1234.5, 2000.0, 900.25]
    assert frame["nom"].tolist() == ["Hélène", "Zoé", "Léa"]
    assert counts == {"placeholders": 1, "infinite": 0}
    etl = data.read_csv(path, "input")
    assert frame["revenu"].tolist() == etl["revenu"].tolist()


def test_placeholders_and_infinities_are_missing_and_counted(tmp_path):
    values = ["1", "?", "#N/A", "NA", "n/a", "inf", "-Infinity", "1e999", "2.5", ""]
    text = "x,c\n" + "".join(f"{v},{'NA' if i == 2 else 'a'}\n" for i, v in enumerate(values))
    path = _write(tmp_path, "ph.csv", text)
    frame, counts = _read(path, ["x"], ["c"])
    assert frame["x"].isna().tolist() == [False] + [True] * 7 + [False, True]
    assert counts == {"placeholders": 4, "infinite": 3}
    assert frame["c"].tolist() == ["a", "a", None, *["a"] * 7]


def test_a_word_in_a_number_names_the_file_the_column_and_the_row(tmp_path):
    rows = [str(i) for i in range(20)]
    rows[13] = "lourd"
    path = _write(tmp_path, "w.csv", "x,c\n" + "".join(f"{v},a\n" for v in rows))
    with pytest.raises(MlcycleError) as error:
        _read(path, ["x"], chunk_rows=5)
    assert str(error.value) == (
        f"column 'x' of the input file {path} should be numeric but holds 'lourd' at row 13 "
        "(line 15); 1 such value(s) in rows 10-14; nothing was written"
    )


def test_utf8_in_the_head_and_cp1252_further_down_is_cp1252_as_etl_finds(tmp_path, monkeypatch):
    monkeypatch.setattr(csvchunks, "HEAD_BYTES", 64)
    text = "nom,x\n" + "".join(f"n{i},{i}\n" for i in range(30)) + "Zoé,1\n"
    path = _write(tmp_path, "late.csv", text, "cp1252")
    assert csvchunks.sniff(path).encoding == "cp1252"
    dialect = csvchunks.sniff(path)
    (last,) = [c for c in csvchunks.read_chunks(path, dialect, ["nom"], 100)]
    assert last["nom"].iloc[-1] == "Zoé"


def test_what_is_not_one_csv_file_is_one_line(tmp_path):
    with pytest.raises(MlcycleError, match=f"input file not found: {tmp_path / 'no.csv'}$"):
        csvchunks.sniff(tmp_path / "no.csv")
    with pytest.raises(MlcycleError, match="is a folder: engine=pandas reads one CSV file"):
        csvchunks.sniff(tmp_path)
    parquet = tmp_path / "p.parquet"
    pd.DataFrame({"x": [1]}).to_parquet(parquet)
    with pytest.raises(MlcycleError, match="is Parquet: engine=pandas reads CSV; use engine=spark"):
        csvchunks.sniff(parquet)
    with pytest.raises(MlcycleError, match="has a header but no rows"):
        csvchunks.sniff(_write(tmp_path, "h.csv", "x,y\n"))
    with pytest.raises(MlcycleError, match="is empty"):
        csvchunks.sniff(_write(tmp_path, "e.csv", ""))
    with pytest.raises(MlcycleError, match="is ambiguous"):
        csvchunks.sniff(_write(tmp_path, "two.csv", "a;b,c\n1;2,3\n4;5,6\n"))


def _scored(path, numeric, chunk_rows=3):
    """What score's chunked reader makes of the numeric columns, to the last check."""
    from mlcycle.models import scoring

    inputs = scoring.Inputs(features=numeric, numeric=numeric, categorical=[])
    chunks = scoring.conformed_chunks(path, inputs, chunk_rows=chunk_rows)
    return pd.concat([features for _, _, features in chunks])


def _etl_refusal(path):
    with pytest.raises(MlcycleError) as error:
        data.read_csv(path, "input")
    return str(error.value)


def test_a_comma_that_may_group_thousands_is_refused_for_the_whole_file_as_etl_refuses_it(
    tmp_path,
):
    """'1,234' in the last chunk only, the first chunks plain integers: etl refuses the
    file; chunk by chunk the last chunk alone read 1.234. Now the same refusal, with the row."""
    rows = [f"{i},{i}" for i in range(10)] + ['10,"1,234"']
    path = _write(tmp_path, "k.csv", "n,x\n" + "\n".join(rows) + "\n")
    assert "is ambiguous: in column 'x', '1,234' may be" in _etl_refusal(path)
    with pytest.raises(MlcycleError) as error:
        _scored(path, ["x"])
    assert str(error.value) == (
        f"input file {path} is ambiguous: in column 'x', '1,234' (row 10) may be a decimal "
        "comma (1.234) or a thousands separator (1234); write it without thousands separators"
    )


def test_a_surely_decimal_comma_anywhere_settles_it_as_in_etl(tmp_path):
    """'1,234' in the first chunk, '2,5' in a later one (of the column, or of a column
    score does not read): etl reads 1.234, and so does score."""
    for name, later in (("same", '"2,5",1'), ("other", '2,"2,5"')):
        rows = ['"1,234",1'] + [f"{i},1" for i in range(6)] + [later]
        path = _write(tmp_path, f"{name}.csv", "x,y\n" + "\n".join(rows) + "\n")
        etl = data.read_csv(path, "input")
        assert _scored(path, ["x"])["x"].tolist() == etl["x"].astype(float).tolist(), name
        assert etl["x"][0] == 1.234


def test_decimal_marks_that_change_between_chunks_are_refused_as_etl_refuses_them(tmp_path):
    """'1.0' (a point, a whole number: no mark for the chunk alone) then '2,5' chunks
    later: etl refuses the column; so does score, naming both values and their rows."""
    rows = ["1.0"] + [str(i) for i in range(5)] + ['"2,5"']
    path = _write(tmp_path, "m.csv", "x\n" + "\n".join(rows) + "\n")
    assert "mixes decimal marks: '2,5' and '1.0'" in _etl_refusal(path)
    with pytest.raises(MlcycleError) as error:
        _scored(path, ["x"])
    assert str(error.value) == (
        f"column 'x' of the input file {path} mixes decimal marks: '2,5' (row 6) and '1.0' (row 0)"
    )
