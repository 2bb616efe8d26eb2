"""The CSV files users actually have: spreadsheet exports with `;` and decimal commas,
thousands separators, BOMs and cp1252 accents, infinities and the placeholders people
type for "no value". Each is read as what it means, or refused with one line."""

import logging

import numpy as np
import pandas as pd
import pytest

from mlcycle.errors import MlcycleError
from mlcycle.ingest import data
from mlcycle.steps.etl import EtlParams, prepare

NBSP, NNBSP = "\u00a0", "\u202f"


def write(tmp_path, name, text, encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def numbers_file(tmp_path, name, values, extra=None, rows=40):
    """A two-feature file whose column x holds `values` then plain numbers up to `rows`."""
    xs = list(values) + [str(10 + i) for i in range(rows - len(values))]
    lines = ["x,c,y"] + [f"{x},{'ab'[i % 2]},{i * 1.5}" for i, x in enumerate(xs)]
    return write(tmp_path, name, "\n".join(lines + (extra or [])) + "\n")


# --- delimiter, decimal mark, encoding ----------------------------------------------


def test_a_french_spreadsheet_export_reads_as_numbers(tmp_path):
    """`;`, decimal comma, thousands grouped by spaces, a BOM, accents."""
    text = (
        "\ufeffâge;région;revenu;montant\n"
        f"36;Île-de-France;1{NBSP}234,5;12{NNBSP}000\n"
        "41;Bretagne;987,25;9 500,5\n"
        "29;Hauts-de-France;2 000;-3,75\n"
    )
    frame = data.read_csv(write(tmp_path, "fr.csv", text), "reference")
    assert list(frame.columns) == ["âge", "région", "revenu", "montant"]
    assert frame["revenu"].tolist() == [1234.5, 987.25, 2000.0]
    assert frame["montant"].tolist() == [12000.0, 9500.5, -3.75]
    assert frame["âge"].dtype == np.int64
    assert frame["région"].tolist() == ["Île-de-France", "Bretagne", "Hauts-de-France"]


def test_cp1252_accents_are_read_when_the_file_is_not_utf8(tmp_path):
    text = "nom;région;poids\nAndré;Île-de-France;70,5\nZoé;Pays de la Loire;61\n"
    table = data.read_table(write(tmp_path, "win.csv", text, "cp1252"), "current")
    assert table.frame["région"].tolist() == ["Île-de-France", "Pays de la Loire"]
    assert table.frame["nom"].tolist() == ["André", "Zoé"]
    assert table.frame["poids"].tolist() == [70.5, 61.0]
    assert table.encoding == "cp1252"


def test_a_tab_separated_file_is_read(tmp_path):
    frame = data.read_csv(write(tmp_path, "t.tsv", "a\tb\tc\n1,5\tx\t2\n2,5\ty\t3\n"), "current")
    assert frame["a"].tolist() == [1.5, 2.5] and frame["b"].tolist() == ["x", "y"]


def test_a_quoted_decimal_comma_in_a_comma_separated_file_is_a_number(tmp_path):
    text = 'age,poids,sexe\n"36,5","70,25",F\n"41,0","81,5",H\n"29,75",64,F\n'
    frame = data.read_csv(write(tmp_path, "q.csv", text), "reference")
    assert frame["age"].tolist() == [36.5, 41.0, 29.75]
    assert frame["poids"].tolist() == [70.25, 81.5, 64.0]


def test_plain_files_read_as_before(tmp_path):
    text = "a,b,c,d\n1,2.5,x,\n3,-4e2,y,\n"
    frame = data.read_csv(write(tmp_path, "p.csv", text), "reference")
    assert frame["a"].dtype == np.int64 and frame["b"].tolist() == [2.5, -400.0]
    assert frame["c"].tolist() == ["x", "y"] and frame["d"].isna().all()


def test_unquoted_decimal_commas_in_a_comma_separated_file_are_refused(tmp_path):
    """pandas would take the first field for an index and shift every column by one."""
    path = write(tmp_path, "u.csv", "age,poids,sexe\n36,5,70,F\n41,0,81,H\n")
    with pytest.raises(MlcycleError, match="reference file .*u.csv: record 2 has 4 fields"):
        data.read_csv(path, "reference")


def test_english_thousands_separators_before_a_point_are_read(tmp_path):
    text = 'id,amount\na,"1,234.50"\nb,999.00\nc,"12,000.25"\n'
    frame = data.read_csv(write(tmp_path, "us.csv", text), "current")
    assert frame["amount"].tolist() == [1234.5, 999.0, 12000.25]


def test_excel_unicode_text_export_is_read(tmp_path):
    """Excel's "Unicode text": UTF-16 with a BOM, tab-separated."""
    text = "région\tpoids\nÎle-de-France\t70,5\nBretagne\t61\n"
    table = data.read_table(write(tmp_path, "u16.txt", text, "utf-16"), "current")
    assert table.frame["poids"].tolist() == [70.5, 61.0] and table.encoding == "utf-16"
    assert table.frame["région"].tolist() == ["Île-de-France", "Bretagne"]


def test_both_decimal_marks_in_one_column_are_refused(tmp_path):
    path = write(tmp_path, "mix.csv", 'a,b\n"36,5",1\n37.5,2\n38,3\n')
    with pytest.raises(MlcycleError, match="column 'a' of the reference file .*mix.csv") as err:
        data.read_csv(path, "reference")
    assert "'36,5'" in str(err.value) and "'37.5'" in str(err.value)


def test_a_comma_that_may_be_a_thousands_separator_is_ambiguous(tmp_path):
    path = write(tmp_path, "k.csv", 'a,b\n"1,234",1\n"12,500",2\n7,3\n')
    with pytest.raises(MlcycleError, match="current file .*k.csv is ambiguous") as err:
        data.read_csv(path, "current")
    assert "column 'a'" in str(err.value) and "'1,234'" in str(err.value)


def test_the_same_commas_are_decimal_in_a_semicolon_file(tmp_path):
    frame = data.read_csv(write(tmp_path, "k.csv", "a;b\n1,234;1\n12,500;2\n7;3\n"), "current")
    assert frame["a"].tolist() == [1.234, 12.5, 7.0]


def test_a_file_that_reads_as_two_tables_is_ambiguous(tmp_path):
    path = write(tmp_path, "two.csv", "a;b,c\n1;2,3\n4;5,6\n")
    with pytest.raises(MlcycleError, match="reference file .*two.csv is ambiguous") as err:
        data.read_csv(path, "reference")
    assert "comma" in str(err.value) and "semicolon" in str(err.value)


def test_one_info_line_per_file_says_what_was_detected(tmp_path, caplog):
    path = write(tmp_path, "fr.csv", "\ufeffa;b;c\n1,5;x;2\n2,5;y;3\n")
    with caplog.at_level(logging.INFO, logger="mlcycle"):
        data.read_csv(path, "reference")
    (line,) = [r.getMessage() for r in caplog.records if str(path) in r.getMessage()]
    assert "delimiter ';'" in line and "decimal mark ','" in line and "utf-8" in line


def test_the_info_line_names_each_column_read_as_missing_and_its_count(tmp_path, caplog):
    path = write(tmp_path, "ph.csv", "x,y,c\n?,inf,a\n1,n/a,b\n2,-inf,c\nNA,3,d\n")
    with caplog.at_level(logging.INFO, logger="mlcycle"):
        data.read_csv(path, "current")
    (line,) = [r.getMessage() for r in caplog.records if str(path) in r.getMessage()]
    assert line.endswith(
        "; read as missing or ±inf: 2 placeholder(s) in x, 1 placeholder(s) in y, "
        "2 infinite value(s) in y"
    )


# --- placeholders, stray text, infinities ---------------------------------------------


@pytest.mark.parametrize("role", ["reference", "current"])
def test_placeholders_in_a_numeric_column_are_missing_and_counted(tmp_path, role):
    marks = ["?", "-", "--", "n/a", "N/A", "na", "NA", "null", "NULL", "none", "None", "#N/A"]
    table = data.read_table(numbers_file(tmp_path, "p.csv", marks + ["#VALUE!", " "]), role)
    assert pd.api.types.is_float_dtype(table.frame["x"])
    assert table.frame["x"].isna().sum() == len(marks) + 2
    assert table.placeholders == {"x": len(marks) + 1}


@pytest.mark.parametrize("role", ["reference", "current"])
def test_stray_text_in_a_mostly_numeric_column_is_one_error_in_either_file(tmp_path, role):
    path = numbers_file(tmp_path, "s.csv", ["lots", "?", "beaucoup", "lots", "x9", "zz"], rows=120)
    with pytest.raises(MlcycleError, match=f"column 'x' of the {role} file .*s.csv") as err:
        data.read_csv(path, role)
    message = str(err.value)
    assert "'lots'" in message and "'beaucoup'" in message and "'x9'" in message
    assert "'zz'" not in message and "5 such values" in message


def test_a_truly_categorical_column_stays_text(tmp_path):
    rows = [f"{v},{i}" for i, v in enumerate(["bac", "bac+2", "?", "3", "master", "-"] * 5)]
    frame = data.read_csv(write(tmp_path, "c.csv", "\n".join(["e,y", *rows]) + "\n"), "reference")
    assert frame["e"].dtype == object and set(frame["e"]) >= {"bac", "?", "-", "3"}


@pytest.mark.parametrize("role", ["reference", "current"])
def test_infinities_are_read_and_counted(tmp_path, role):
    path = numbers_file(tmp_path, "i.csv", ["inf", "-inf", "Infinity", "NaN", "1e999"])
    table = data.read_table(path, role)
    x = table.frame["x"]
    assert pd.api.types.is_float_dtype(x) and np.isinf(x).sum() == 4 and x.isna().sum() == 1
    assert table.infinite == {"x": 4} and table.placeholders == {"x": 1}


# --- through the etl step: both files treated alike --------------------------------


def _files(tmp_path, ref_values, cur_values, reference_target=None, current_target=None):
    rng = np.random.default_rng(0)
    paths = {}
    for role, values, target in (
        ("reference", ref_values, reference_target),
        ("current", cur_values, current_target),
    ):
        n = 60
        frame = pd.DataFrame(
            {
                "x": rng.normal(50, 10, n).round(2).astype(str),
                "c": rng.choice(["u", "v"], n),
                "y": rng.normal(100, 20, n).round(1).astype(str),
            }
        )
        if values:
            frame.loc[: len(values) - 1, "x"] = values
        if target:
            frame.loc[: len(target) - 1, "y"] = target
        paths[role] = tmp_path / f"{role}.csv"
        frame.to_csv(paths[role], index=False)
    return paths


def _prepare(paths):
    return prepare(
        EtlParams(
            reference=str(paths["reference"]),
            current=str(paths["current"]),
            target="y",
            drop_columns="",
        )
    )


def test_etl_treats_placeholders_and_infinities_alike_in_both_files(tmp_path):
    paths = _files(tmp_path, ["?", "inf", "n/a"], ["-inf", "NA", "-", "Infinity"])
    result = _prepare(paths)
    assert result.schema.numeric == ["x"] and result.schema.task == "regression"
    for name, split in result.splits.items():
        assert np.isfinite(split["x"].dropna()).all(), name
    read = result.quality["read_as_missing"]
    assert read["reference"] == {"placeholders": {"x": 2}, "infinite": {"x": 1}}
    assert read["current"] == {"placeholders": {"x": 2}, "infinite": {"x": 2}}
    assert result.quality["missing_share"]["reference"]["x"] == pytest.approx(3 / 60, abs=1e-3)


@pytest.mark.parametrize("role", ["reference", "current"])
def test_an_infinite_target_is_refused_in_either_file(tmp_path, role):
    targets = {f"{role}_target": ["12.5", "inf"]}
    paths = _files(tmp_path, [], [], **targets)
    with pytest.raises(MlcycleError, match=f"target column 'y' of the {role} file .*{role}.csv"):
        _prepare(paths)


def test_a_column_numeric_in_one_file_and_text_in_the_other_names_both_files(tmp_path):
    words = ["low", "high", "mid"] * 10
    paths = _files(tmp_path, [], words)
    with pytest.raises(MlcycleError, match="column 'x' of the current file .*current.csv") as err:
        _prepare(paths)
    assert str(paths["reference"]) in str(err.value) and "'low'" in str(err.value)
    paths = _files(tmp_path, words, [])
    with pytest.raises(MlcycleError, match="column 'x' of the current file .*current.csv") as err:
        _prepare(paths)
    assert str(paths["reference"]) in str(err.value) and "text" in str(err.value)


def test_a_column_numeric_in_both_files_with_different_marks_is_fine(tmp_path):
    """A comma-separated reference and a French current file are the same kind of data."""
    paths = _files(tmp_path, [], [])
    original = pd.read_csv(paths["current"], dtype=str)
    original.apply(lambda s: s.str.replace(".", ",")).to_csv(paths["current"], index=False, sep=";")
    result = _prepare(paths)
    assert result.schema.numeric == ["x"]
    both = pd.concat([result.splits.current_train, result.splits.current_test])
    assert len(both) >= 50 and set(both["x"]) <= set(original["x"].astype(float))
    assert set(both["y"]) <= set(original["y"].astype(float))


@pytest.mark.parametrize("header", ["prediction_id,target,target", "a,b,a", "x,target, target "])
def test_a_header_naming_a_column_twice_is_refused_naming_it(header):
    # pandas renamed the second to 'target.1' and the first was read without a word: a
    # labels file with two target columns, or a batch with two 'bmi', silently used one.
    from mlcycle.ingest import csvread

    text = header + "\n" + "1,2,3\n4,5,6\n"
    with pytest.raises(MlcycleError, match=r"^labels file f\.csv names .* more than once"):
        csvread.read_strings(text, ",", "labels file f.csv")


def test_empty_header_names_of_trailing_delimiters_are_not_duplicates():
    from mlcycle.ingest import csvread

    frame = csvread.read_strings("a;b;;\n1;2;;\n", ";", "input file f.csv")
    assert list(frame.columns[:2]) == ["a", "b"]
