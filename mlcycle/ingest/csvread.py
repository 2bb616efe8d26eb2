"""Read a CSV the way the spreadsheet that wrote it meant it.

Users' files come from Excel or LibreOffice in their own locale: a French export is
`;`-separated with decimal commas (`36,5`), thousands grouped by (non-breaking) spaces
(`1 234,5`), in UTF-8 with a BOM or in cp1252. People type placeholders (`?`, `n/a`,
`#VALUE!`) where a number is missing, and programs write `inf`. This module finds the
encoding, the delimiter and each column's decimal mark, and reads a column as numbers
only when (nearly) all of it is numbers. The rules look at one file at a time and are
the same for every file, so a reference and a current file are read alike.

Pure functions over text and frames; `mlcycle.ingest.data.read_table` does the file I/O."""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import re
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mlcycle.errors import MlcycleError
from mlcycle.ingest.marks import Marks, check_file_marks, check_marks

DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab"}
# Records looked at to choose the delimiter: enough to see a regular table, cheap on
# a file of millions of rows.
SNIFF_RECORDS = 1000
SNIFF_CHARS = 1_000_000
# A column this share of whose values are numbers is numeric: the rest is a mistake to
# report, not a reason to read every number as a category.
NUMERIC_SHARE = 0.95
# Read as missing in a numeric column (compared lower-case, spaces stripped): what people
# and spreadsheets write for "no value", and pandas' own markers so that a numeric column
# pandas read before reads the same. NaN is "not a number": a missing value, not an
# infinite one.
PLACEHOLDERS = frozenset(
    {"?", "-", "--", "n/a", "na", "null", "none", "nan", "-nan", "+nan", "<na>", "#na"}
    | {"#n/a", "#n/a n/a", "-1.#ind", "1.#ind", "-1.#qnan", "1.#qnan"}
    | {"#value!", "#div/0!", "#num!", "#ref!", "#name?", "#null!"}
)
INFINITIES = frozenset({"inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"})
# pandas' default missing-value markers, kept for text columns so categories read as
# they always did ("-" or "?" may be a category there).
TEXT_MISSING = frozenset(
    {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND"}
    | {"1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"}
)
# Spaces a spreadsheet puts between groups of thousands: space, no-break, narrow no-break.
GROUP_SPACES = " \u00a0\u202f"
GROUPED = re.compile(rf"[+-]?\d{{1,3}}(?:[{GROUP_SPACES}]\d{{3}})+(?:[.,]\d*)?")
# '1,234.5': commas that can only group thousands, since a point follows them.
COMMA_GROUPED = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+\.\d*")
NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d+")
# "1,234" in a comma-separated file: 1.234 with a decimal comma, or 1234 in US style.
THOUSANDS_LIKE = re.compile(r"[+-]?\d{1,3},\d{3}")


@dataclass
class Column:
    """One column as read: its values and what reading it found."""

    values: pd.Series
    numeric: bool
    mark: str | None = None  # the decimal mark seen in the column, if any
    placeholders: int = 0
    infinite: int = 0
    evidence: Marks = field(default_factory=Marks)


@dataclass
class Table:
    """A file read: the frame (numbers typed, infinities kept as ±inf for the caller to
    judge) and what was detected, for the log and the quality summary."""

    frame: pd.DataFrame
    encoding: str
    delimiter: str
    marks: dict[str, str] = field(default_factory=dict)
    placeholders: dict[str, int] = field(default_factory=dict)
    infinite: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        """One line for the log: how the file was read."""
        seen = {}
        for column, mark in self.marks.items():
            seen.setdefault(mark, []).append(column)
        if len(seen) > 1:
            decimal = "decimal mark ',' in " + ", ".join(seen[","]) + " and '.' elsewhere"
        else:
            decimal = f"decimal mark {next(iter(seen), '.')!r}"
        rows, cols = self.frame.shape
        line = (
            f"{self.encoding}, delimiter {self.delimiter!r}, {decimal}, "
            f"{rows} rows x {cols} columns"
        )
        seen = [f"{n} placeholder(s) in {c}" for c, n in self.placeholders.items()]
        seen += [f"{n} infinite value(s) in {c}" for c, n in self.infinite.items()]
        if seen:
            line += f"; read as missing or ±inf: {', '.join(seen)}"
        return line


def decode(raw: bytes, where: str) -> tuple[str, str]:
    """The file's text and the encoding that gave it: a BOM says; else UTF-8 if it
    decodes, else cp1252 (what Excel on Windows writes in Western Europe)."""
    if raw.startswith(codecs.BOM_UTF8):
        try:
            return raw[len(codecs.BOM_UTF8) :].decode("utf-8"), "utf-8 with BOM"
        except UnicodeDecodeError as exc:
            raise MlcycleError(f"{where} starts with a UTF-8 BOM but is not UTF-8: {exc}") from exc
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        # Excel's "Unicode text" export: UTF-16, tab-separated.
        try:
            return raw.decode("utf-16"), "utf-16"
        except UnicodeDecodeError as exc:
            raise MlcycleError(f"{where} starts with a UTF-16 BOM but is not UTF-16") from exc
    if b"\x00" in raw[:4096]:
        raise MlcycleError(f"{where} is not CSV text (it holds binary data)")
    for encoding in ("utf-8", "cp1252"):
        try:
            return raw.decode(encoding), encoding
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1"), "latin-1"


def sniff_delimiter(text: str, where: str) -> str:
    """The one of comma, semicolon and tab that cuts the file into a regular table.

    Two that both do is an error: guessing would silently read the wrong columns."""
    counts = {d: _field_counts(text, d) for d in DELIMITERS}
    wide = {d: c for d, c in counts.items() if c and c[0] >= 2}
    if not wide:
        return ","  # a single column: the caller says so
    regular = [d for d, c in wide.items() if all(n == c[0] for n in c[1:])]
    if len(regular) > 1:
        options = " or ".join(f"{DELIMITERS[d]} ({wide[d][0]} columns)" for d in regular)
        raise MlcycleError(f"{where} is ambiguous: it reads as a table with {options} as delimiter")
    chosen = regular[0] if regular else max(wide, key=lambda d: _regular_share(wide[d]))
    header = wide[chosen][0]
    for line, n in enumerate(wide[chosen][1:], start=2):
        if n > header:
            raise MlcycleError(
                f"{where}: record {line} has {n} fields but the header {header} "
                f"({DELIMITERS[chosen]}-separated); quote numbers written with a decimal "
                "comma, or separate fields with ';'"
            )
    return chosen


def _field_counts(text: str, delimiter: str) -> list[int]:
    """Fields per record (blank lines skipped, as pandas does) over the first records."""
    sample = text[:SNIFF_CHARS]
    cut = len(text) > SNIFF_CHARS
    reader = csv.reader(io.StringIO(sample), delimiter=delimiter)
    try:
        counts = [len(r) for r in itertools.islice(filter(None, reader), SNIFF_RECORDS + 1)]
    except csv.Error:
        return []
    # The last record of a sample cut short may be cut short itself.
    return counts[:-1] if cut and len(counts) > 1 else counts[:SNIFF_RECORDS]


def _regular_share(counts: list[int]) -> tuple[float, int]:
    rows = counts[1:] or [counts[0]]
    return sum(n == counts[0] for n in rows) / len(rows), counts[0]


def read_strings(text: str, delimiter: str, where: str) -> pd.DataFrame:
    """Every field as the string it is; nothing guessed by pandas. A header naming a
    column twice is refused: pandas renamed the second (`x.1`) and the first was read as
    if it were the only one."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.ParserWarning)
        try:
            _refuse_repeated_names(text, delimiter, where)
            return pd.read_csv(
                io.StringIO(text),
                sep=delimiter,
                dtype=str,
                keep_default_na=False,
                na_filter=False,
                index_col=False,
            )
        except pd.errors.EmptyDataError as exc:
            raise MlcycleError(f"{where} is empty") from exc
        except (pd.errors.ParserError, pd.errors.ParserWarning) as exc:
            raise MlcycleError(f"{where} is not valid CSV text: {exc}") from exc


def _refuse_repeated_names(text: str, delimiter: str, where: str) -> None:
    header = pd.read_csv(
        io.StringIO(text), sep=delimiter, header=None, nrows=1, dtype=str, na_filter=False
    )
    names = [str(n).strip() for n in header.iloc[0]] if len(header) else []
    repeated = sorted({n for n in names if n and names.count(n) > 1})
    if repeated:
        raise MlcycleError(
            f"{where} names {', '.join(map(repr, repeated))} more than once in its header: "
            "which column is meant cannot be told; rename or remove the copies"
        )


def read_column(raw: pd.Series, where: str) -> Column:
    """Numbers when at least NUMERIC_SHARE of the values are numbers in one decimal mark
    (placeholders and infinities aside); text otherwise. A numeric column with a few
    other values, or with both marks, is an error naming them.

    Measured here: parsing every value read a 200,000-row file 40x slower than pandas
    (pd.to_numeric costs microseconds per value it refuses). Each distinct value is
    looked at once; plain numbers go through pandas' C parser."""
    codes, distinct = pd.factorize(raw)
    weight = np.bincount(codes, minlength=len(distinct))
    distinct = pd.Series(distinct, dtype=object)
    fast = pd.to_numeric(distinct, errors="coerce")
    plain = (fast.notna() & ~np.isinf(fast.astype("float64"))).to_numpy()
    text = distinct[~plain].str.strip()
    lower = text.str.lower()
    empty = text.eq("")
    marker = lower.isin(PLACEHOLDERS) & ~empty
    infinite = lower.isin(INFINITIES)
    rest = ~(empty | marker | infinite)
    tokens = ungroup(text[rest])
    dot, comma = _as_numbers(tokens, "."), _as_numbers(tokens, ",")
    w_odd = weight[~plain]
    w_rest = w_odd[rest.to_numpy()]
    values = int(weight[plain].sum() + w_rest.sum() + w_odd[infinite.to_numpy()].sum())
    numbers = values - int(w_rest[(dot.isna() & comma.isna()).to_numpy()].sum())
    if values and numbers < NUMERIC_SHARE * values:
        return Column(values=raw.where(~raw.isin(TEXT_MISSING)), numeric=False)
    comma_only = comma.notna() & dot.isna()
    dotted = text[rest][dot.notna() & comma.isna()]
    # Numbers pandas read as integers hold no point: not looked at.
    pointed = distinct[plain] if not pd.api.types.is_integer_dtype(fast) else distinct[:0]
    evidence = _evidence(raw, codes, text[rest][comma_only], dotted, pointed)
    check_marks(str(raw.name), evidence, where)
    mark = evidence.mark
    if not mark and (not dotted.empty or (fast[plain] % 1 != 0).any()):
        mark = "."
    parsed = comma if mark == "," else dot
    bad = parsed.isna().to_numpy()
    if bad.any():
        shown = ", ".join(repr(v) for v in text[rest][bad][:3])
        raise MlcycleError(
            f"column {raw.name!r} of the {where} holds numbers but also {shown} "
            f"({int(w_rest[bad].sum())} such values; a missing number is left empty or "
            "written as n/a, NA or ?)"
        )
    odd = np.full(len(text), np.nan)
    odd[rest.to_numpy()] = parsed.to_numpy()
    odd[infinite.to_numpy()] = np.where(lower[infinite].str.startswith("-"), -np.inf, np.inf)
    column = Column(
        values=_numbers_column(raw, codes, distinct, fast, plain, odd, tokens),
        numeric=True,
        mark=mark,
        placeholders=int(w_odd[marker.to_numpy()].sum()),
        infinite=int(w_odd[np.isinf(odd)].sum()),  # '1e999' overflows to inf too
        evidence=evidence,
    )
    return column


def _evidence(raw, codes, commas, dotted, plain) -> Marks:
    """The first decimal comma, surely decimal comma and decimal point of the column,
    each with its row (the index label of `raw`: a chunk's rows count on from the file's
    first row). `commas`, `dotted` and `plain` are distinct values, indexed by code:
    pd.factorize numbers values in order of appearance, so the lowest code is the first."""

    def first(*candidates: pd.Series) -> tuple[str, int] | None:
        codes_seen = [c.index.min() for c in candidates if not c.empty]
        if not codes_seen:
            return None
        code = min(codes_seen)
        value = next(c[code] for c in candidates if code in c.index)
        return str(value).strip(), int(raw.index[int(np.argmax(codes == code))])

    sure = commas[~commas.str.fullmatch(THOUSANDS_LIKE).fillna(False).astype(bool)]
    return Marks(first(commas), first(sure), first(dotted, _with_point(plain)))


def _with_point(plain: pd.Series) -> pd.Series:
    """The first of these values written with a point. Measured here: looking at every
    distinct value of a float column made score's reading 20 % slower; the first few
    nearly always hold one."""
    for part in (plain.iloc[:64], plain.iloc[64:]):
        found = part[part.str.contains(".", regex=False)]
        if not found.empty:
            return found.iloc[:1]
    return plain.iloc[:0]


def ungroup(tokens: pd.Series) -> pd.Series:
    """'1 234,5' -> '1234,5' (thousands grouped by spaces, as French spreadsheets write)
    and '1,234.5' -> '1234.5' (the English way, unambiguous once a point follows)."""
    for pattern, separators in ((GROUPED, GROUP_SPACES), (COMMA_GROUPED, ",")):
        grouped = tokens.str.fullmatch(pattern)
        if grouped.any():
            tokens = tokens.copy()
            tokens[grouped] = tokens[grouped].str.replace(f"[{separators}]", "", regex=True)
    return tokens


def _as_numbers(tokens: pd.Series, mark: str) -> pd.Series:
    """Each token as a float if it is a number written with this decimal mark, else NaN."""
    if mark == ",":
        tokens = tokens.where(~tokens.str.contains(".", regex=False))
        tokens = tokens.str.replace(",", ".", regex=False)
    # pd.to_numeric is fast but refuses an overflow ('1e999'): float() reads it as inf.
    values = pd.to_numeric(tokens, errors="coerce").astype("float64")
    retry = values.isna() & tokens.notna()
    if retry.any():
        well_formed = tokens[retry].str.fullmatch(NUMBER).fillna(False).astype(bool)
        retry[retry] = well_formed.to_numpy()
        values[retry] = tokens[retry].astype(float)
    return values


def _numbers_column(raw, codes, distinct, fast, plain, odd, tokens) -> pd.Series:
    """Whole numbers with no hole stay integers, as pandas reads them; else floats, with
    missing values as NaN and infinities as ±inf. `odd` holds the values of the distinct
    strings pandas could not parse."""
    if plain.all() and pd.api.types.is_integer_dtype(fast):
        return pd.Series(fast.to_numpy()[codes], index=raw.index, name=raw.name)
    per_value = fast.to_numpy(dtype="float64", na_value=np.nan)
    per_value[~plain] = odd
    out = pd.Series(per_value[codes], index=raw.index, name=raw.name)
    whole = np.isfinite(per_value).all() and tokens.str.fullmatch(_INTEGER).all()
    plain_whole = not plain.any() or pd.api.types.is_integer_dtype(pd.to_numeric(distinct[plain]))
    return out.astype("int64") if whole and plain_whole else out


def is_number(values: pd.Series) -> pd.Series:
    """Which of these (non-missing) values read as a number, in either decimal mark, or
    as an infinity."""
    text = values.astype(str).str.strip()
    tokens = ungroup(text)
    numbers = _as_numbers(tokens, ".").notna() | _as_numbers(tokens, ",").notna()
    return numbers | text.str.lower().isin(INFINITIES)


def read_table(text: str, encoding: str, where: str) -> Table:
    """Delimiter, then every column; a comma that may be a thousands separator in a
    file that is not `;`-separated (where the decimal comma is the convention) and shows
    no other decimal comma is an error, not a guess."""
    delimiter = sniff_delimiter(text, where)
    strings = read_strings(text, delimiter, where)
    columns = {name: read_column(strings[name], where) for name in strings.columns}
    check_file_marks({n: c.evidence for n, c in columns.items()}, delimiter, where)
    frame = pd.DataFrame({name: c.values for name, c in columns.items()}, index=strings.index)
    frame.columns = strings.columns
    return Table(
        frame=frame,
        encoding=encoding,
        delimiter=delimiter,
        marks={n: c.mark for n, c in columns.items() if c.mark},
        placeholders={n: c.placeholders for n, c in columns.items() if c.placeholders},
        infinite={n: c.infinite for n, c in columns.items() if c.infinite},
    )
