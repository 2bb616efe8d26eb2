"""Reading a batch on Spark as etl reads a file (`mlcycle.ingest.csvread`'s rules written as
Spark SQL): the input's format and columns, the CSV read with its sniffed dialect, each
number column's decimal mark decided over the whole input and text in a number refused
before the model runs (`prepare`), and each row's position in the file (`with_positions`,
see `mlcycle.scaleout.spark_scoring`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from mlcycle.errors import MlcycleError
from mlcycle.ingest import csvchunks, csvread
from mlcycle.models.outputs import SUFFIX
from mlcycle.models.scoring import ROW, Inputs, read_header
from mlcycle.scaleout.spark_session import spark_errors

log = logging.getLogger(__name__)

_FILE, _START, _ID, _SHIFT = "__mlcycle_file", "__mlcycle_start", "__mlcycle_id", "__mlcycle_shift"

# Splits per core of the cluster when the input is planned (see with_positions).
SPLITS_PER_CORE = 4


# ------------------------------------------------------------------------------- input


def input_format(path: Path) -> str:
    """parquet when the file (or every part of the folder) is Parquet, else csv."""
    if not path.exists():
        raise MlcycleError(f"input file not found: {path}")
    parts = [path] if path.is_file() else _parts(path)
    if not parts:
        raise MlcycleError(f"input folder {path} holds no file to read")
    return "parquet" if all(p.suffix == SUFFIX for p in parts) else "csv"


def input_columns(path: Path) -> list[str]:
    """The input's column names, read on the driver before Spark starts (the first part
    of a folder), so a column the model needs is found missing at once."""
    kind = input_format(path)  # first: a missing input is said so
    first = path if path.is_file() else _parts(path)[0]
    if kind == "parquet":
        import pyarrow.parquet as pq

        try:
            return list(pq.read_schema(first).names)
        except (OSError, ValueError) as exc:
            raise MlcycleError(f"input file {first} cannot be read as Parquet: {exc}") from exc
    return read_header(first)


def _parts(folder: Path) -> list[Path]:
    """The files Spark reads in a folder (it skips names starting with '_' or '.')."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(("_", ".")))


@dataclass
class SparkInput:
    """The input as Spark reads it: CSV columns as text, nothing typed yet."""

    frame: object  # a pyspark DataFrame
    delimiter: str | None = None  # a CSV's; None for Parquet


def read_input(spark, path: Path) -> SparkInput:
    """The input as a DataFrame of the files' own columns (CSV: text, header line, the
    encoding and delimiter etl finds in the first part, quotes doubled as in RFC 4180).
    Numbers are read later (`prepare`), once the whole input's decimal marks are known."""
    reader = spark.read
    with spark_errors(path):
        if input_format(path) == "parquet":
            return SparkInput(reader.parquet(path.as_uri()))
        dialect = csvchunks.sniff(path if path.is_file() else _parts(path)[0])
        frame = (
            reader.option("header", True)
            .option("encoding", _SPARK_ENCODINGS.get(dialect.encoding, "UTF-8"))
            .option("sep", dialect.delimiter)
            .option("escape", '"')
            .csv(path.as_uri())
        )
        if dialect.encoding == "cp1252":
            frame = _from_cp1252(frame)
        return SparkInput(frame, dialect.delimiter)


# Spark 4's CSV reader takes a few charsets only: cp1252 is read as ISO-8859-1, which
# decodes every byte alike but 0x80-0x9f (€, œ, ’...), translated after (`_from_cp1252`).
_SPARK_ENCODINGS = {"utf-8 with BOM": "UTF-8", "cp1252": "ISO-8859-1", "latin-1": "ISO-8859-1"}
_C1 = "".join(chr(b) for b in range(0x80, 0xA0))
_CP1252 = bytes(range(0x80, 0xA0)).decode("cp1252", errors="replace")


def _from_cp1252(frame):
    """Text read as ISO-8859-1 made what cp1252 meant (names and values)."""
    from pyspark.sql import functions as F

    def fixed(text: str) -> str:
        return text.translate(str.maketrans(_C1, _CP1252))

    return frame.select(
        *[F.translate(F.col(f"`{c}`"), _C1, _CP1252).alias(fixed(c)) for c in frame.columns]
    )


# ---------------------------------------------------------------- numbers, as etl reads them
#
# csvread's rules as Spark SQL over each value, with csvread's own patterns (Java's regex
# reads them alike): trimmed of what str.strip removes, placeholders and infinities aside,
# thousands ungrouped, then a number with a point or with a comma. Each value is given one
# kind, in projections of their own so that Spark computes each step once per value.
# Measured on 200,000 rows x 4 number columns, local[2] on a busy 2-core machine: the
# rules as one expression per aggregate took 13 s more than counting the rows; staged,
# the pass takes 6.6 s where reading the four columns takes 2.7 s (trimming what
# str.strip trims is 1.9 s of the difference).

_SPACES = "".join(chr(c) for c in range(0x3001) if chr(c).isspace())
_EMPTY, _PLACEHOLDER, _INFINITY, _PLAIN, _THOUSANDS, _COMMA, _POINT, _BAD = range(8)
_FIRST = {"comma": (_THOUSANDS, _COMMA), "sure_comma": (_COMMA,), "dot": (_POINT,), "bad": (_BAD,)}
COUNTS = ("placeholders", "infinite")


def _rx(pattern) -> str:
    return f"^(?:{pattern.pattern})$"


def _text(name: str):
    from pyspark.sql import functions as F

    return F.btrim(F.col(f"`{name}`"), F.lit(_SPACES))


def _token(text):
    """Thousands ungrouped: '1 234,5' -> '1234,5', '1,234.5' -> '1234.5'."""
    from pyspark.sql import functions as F

    return (
        F.when(text.rlike(_rx(csvread.GROUPED)), F.translate(text, csvread.GROUP_SPACES, ""))
        .when(text.rlike(_rx(csvread.COMMA_GROUPED)), F.translate(text, ",", ""))
        .otherwise(text)
    )


def _kind(text, token):
    """One of _EMPTY.._BAD for each value, as csvread.read_column classes it."""
    from pyspark.sql import functions as F

    lower = F.lower(text)
    number = _rx(csvread.NUMBER)
    with_comma = ~token.contains(".") & F.translate(token, ",", ".").rlike(number)
    return (
        F.when(text.isNull() | (text == ""), _EMPTY)
        .when(lower.isin(sorted(csvread.PLACEHOLDERS)), _PLACEHOLDER)
        .when(lower.isin(sorted(csvread.INFINITIES)), _INFINITY)
        .when(token.rlike(number), F.when(token.contains("."), _POINT).otherwise(_PLAIN))
        .when(
            with_comma,
            F.when(text.rlike(_rx(csvread.THOUSANDS_LIKE)), _THOUSANDS).otherwise(_COMMA),
        )
        .otherwise(_BAD)
    )


def _staged(frame, names: list[str]):
    """frame with, for each column i of names, its text (t_i), token (g_i), kind (k_i)
    and value as a double (v_i), one projection a step."""
    from pyspark.sql import functions as F

    columns = list(enumerate(names))
    frame = frame.select("*", *[_text(n).alias(f"__t{i}") for i, n in columns])
    frame = frame.select("*", *[_token(F.col(f"__t{i}")).alias(f"__g{i}") for i, _ in columns])
    frame = frame.select(
        "*", *[_kind(F.col(f"__t{i}"), F.col(f"__g{i}")).alias(f"__k{i}") for i, _ in columns]
    )
    values = []
    for i, _ in columns:
        kind, token = F.col(f"__k{i}"), F.col(f"__g{i}")
        values.append(
            F.when(kind.isin(_PLAIN, _POINT), token.try_cast("double"))
            .when(kind.isin(_THOUSANDS, _COMMA), F.translate(token, ",", ".").try_cast("double"))
            .alias(f"__v{i}")
        )
    return frame.select("*", *values)


def _evidence(names: list[str]) -> list:
    """Over a `_staged` frame, per column i: the first id of each kind of _FIRST, and
    the placeholders and infinities (an overflow such as 1e999 included)."""
    from pyspark.sql import functions as F

    aggregates = []
    for i, _ in enumerate(names):
        kind = F.col(f"__k{i}")
        # Ids only: a struct (id, text) made Spark sort every row by split (measured on
        # 200,000 rows: 7 s); the texts are read for the rows of a refusal only.
        for name, kinds in _FIRST.items():
            aggregates.append(F.min(F.when(kind.isin(*kinds), F.col(_ID))).alias(f"{i}.{name}"))
        aggregates.append(F.count(F.when(kind == _PLACEHOLDER, 1)).alias(f"{i}.placeholders"))
        infinite = (kind == _INFINITY) | (F.abs(F.col(f"__v{i}")) == float("inf"))
        aggregates.append(F.count(F.when(infinite, 1)).alias(f"{i}.infinite"))
    return aggregates


def _as_number(name: str, mark: str | None):
    """The text Spark casts: placeholders and infinities null, thousands ungrouped, a
    decimal comma made a point (when the column's mark is ',')."""
    from pyspark.sql import functions as F

    text = _text(name)
    token = _token(text)
    token = F.translate(token, ",", ".") if mark == "," else token
    lower = F.lower(text)
    missing = lower.isin(sorted(csvread.PLACEHOLDERS | csvread.INFINITIES)) | (text == "")
    return F.when(missing, None).otherwise(token)


@dataclass
class Prepared:
    """The input with each row's position (ROW) and its numeric columns as the text
    Spark casts, as etl reads them; the rows, and the values read as missing."""

    frame: object
    rows: int
    read_as_missing: dict = field(default_factory=dict)


def prepare(spark, source: SparkInput, inputs: Inputs, path: Path) -> Prepared:
    """Positions and numbers in one pass over the input: the pass that counts each
    split's rows also finds, per numeric column, the first decimal comma, surely decimal
    comma, decimal point and non-number of each split (its id, hence its row) and counts
    the placeholders and infinities. The driver then decides as etl decides over the
    whole input (every part), refusing in one line naming the file, the column and the
    row: a value that is not a number, a column showing both decimal marks, a comma that
    may group thousands in a file not `;`-separated that shows no surely decimal comma
    (the other columns are then looked at too, as etl would)."""
    types = dict(source.frame.dtypes)
    numeric = [c for c in inputs.numeric if types.get(c) == "string"]
    positioned, rows, splits = with_positions(
        spark, source.frame, lambda tagged: _staged(tagged, numeric), _evidence(numeric)
    )
    found: dict[str, dict[str, int]] = {name: {} for name in numeric}  # kind -> first row
    missing: dict[str, dict[str, int]] = {}
    for shift, split in splits:
        for i, name in enumerate(numeric):
            for kind in _FIRST:
                first = split[f"{i}.{kind}"]
                if first is not None:
                    row = first + shift
                    found[name][kind] = min(found[name].get(kind, row), row)
            for kind in COUNTS:
                if split[f"{i}.{kind}"]:
                    counts = missing.setdefault(kind, {})
                    counts[name] = counts.get(name, 0) + split[f"{i}.{kind}"]
    others = {}
    kinds = {kind for f in found.values() for kind in f}
    if source.delimiter != ";" and "comma" in kinds and "sure_comma" not in kinds:
        strings = [c for c in types if c not in found and types[c] == "string"]
        others = _other_marks(source.frame, strings)  # etl looks at every column
    where = f"input file {path}"
    try:
        marks = _judge(found, {}, others, source.delimiter, where)
    except MlcycleError:  # said again with the values, read from their rows
        texts = _texts(positioned, found)
        _judge(found, texts, others, source.delimiter, where, source.frame)
        raise
    frame = positioned.withColumns({name: _as_number(name, marks[name].mark) for name in numeric})
    return Prepared(frame, rows, missing)


def _judge(found, texts, others, delimiter, where, frame=None) -> dict[str, csvread.Marks]:
    """etl's checks over the rows `found` (column -> kind -> first row), with the values
    at those rows when `texts` holds them; the columns' marks when they pass. Given the
    frame, a non-number's refusal counts the column's non-numbers (a second job)."""

    def value(name, kind):
        row = found[name].get(kind)
        return None if row is None else (texts.get((name, row), ""), row)

    bad = {name: f["bad"] for name, f in found.items() if "bad" in f}
    if bad:
        name = min(bad, key=bad.get)
        text, row = value(name, "bad")
        count = ""
        if frame is not None:
            from pyspark.sql import functions as F

            counted = _staged(frame, [name]).filter(F.col("__k0") == _BAD).count()
            count = f"{counted} such value(s); "
        raise MlcycleError(
            f"column {name!r} of the {where} should be numeric but holds {text!r} at row "
            f"{row}; {count}nothing was written"
        )
    marks = {
        name: csvread.Marks(value(name, "comma"), value(name, "sure_comma"), value(name, "dot"))
        for name in found
    }
    for name, column in marks.items():
        csvread.check_marks(name, column, where, rows=True)
    csvread.check_file_marks(marks | others, delimiter or ",", where, rows=True)
    return marks


def _texts(positioned, found) -> dict[tuple[str, int], str]:
    """The (trimmed) values at the rows found, by (column, row): a small job, only for
    an input about to be refused."""
    from pyspark.sql import functions as F

    rows = sorted({row for f in found.values() for row in f.values()})
    names = list(found)
    picked = positioned.filter(F.col(ROW).isin(rows)).select(
        ROW, *[_text(n).alias(f"__t{i}") for i, n in enumerate(names)]
    )
    return {
        (name, record[ROW]): record[f"__t{i}"]
        for record in picked.collect()
        for i, name in enumerate(names)
    }


def _other_marks(frame, columns: list[str]) -> dict[str, csvread.Marks]:
    """The decimal marks of the columns score does not read, for etl's whole-file check
    of a comma that may group thousands: a surely decimal comma in a column of numbers
    (at least csvread.NUMERIC_SHARE of its values) settles it (a second, rare, job)."""
    from pyspark.sql import functions as F

    if not columns:
        return {}
    aggregates = []
    for i, _ in enumerate(columns):
        kind = F.col(f"__k{i}")
        counted = ~kind.isin(_EMPTY, _PLACEHOLDER)
        aggregates += [
            F.count(F.when(counted, 1)).alias(f"{i}.values"),
            F.count(F.when(counted & (kind != _BAD), 1)).alias(f"{i}.numbers"),
            F.min(F.when(kind == _COMMA, F.col(f"__t{i}"))).alias(f"{i}.sure"),
        ]
    row = _staged(frame, columns).agg(*aggregates).first()
    found = {}
    for i, name in enumerate(columns):
        values, numbers, sure = row[f"{i}.values"], row[f"{i}.numbers"], row[f"{i}.sure"]
        if sure and numbers >= csvread.NUMERIC_SHARE * values:
            found[name] = csvread.Marks(comma=(sure, 0), sure_comma=(sure, 0))
    return found


def with_positions(spark, frame, staged=None, aggregates=()):
    """frame (as read, straight from its files) with ROW, the 0-based position of each
    row in the input, the number of rows (see the module doc), and for each split the
    shift from its ids to rows with the `aggregates` asked for over its rows (of the
    frame as `staged` makes it, for the count only)."""
    from pyspark.sql import functions as F

    # The split size follows the cores known when a scan is planned: pinned for both, at
    # SPLITS_PER_CORE splits a core, so a worker that registers after planning, or a core
    # that finishes its share first, still finds tasks to take (with one split a core, a
    # 152 MB file was read as 128 MB + 24 MB and a second worker added 7 %).
    cores = max(spark.sparkContext.defaultParallelism, 1)
    spark.conf.set("spark.sql.files.minPartitionNum", str(SPLITS_PER_CORE * cores))
    tagged = frame.select(
        "*",
        F.col("_metadata.file_path").alias(_FILE),
        F.col("_metadata.file_block_start").alias(_START),
        F.monotonically_increasing_id().alias(_ID),
    )
    splits = (
        (staged(tagged) if staged else tagged)
        .groupBy(_FILE, _START)
        .agg(F.min(_ID).alias("first"), F.count(F.lit(1)).alias("rows"), *aggregates)
        .collect()
    )
    shifts, found, offset = [], [], 0
    for split in sorted(splits, key=lambda s: (s[_FILE], s[_START])):
        shifts.append((split[_FILE], split[_START], offset - split["first"]))
        found.append((offset - split["first"], split))
        offset += split["rows"]
    table = spark.createDataFrame(shifts, f"{_FILE} string, {_START} long, {_SHIFT} long")
    positioned = tagged.join(F.broadcast(table), [_FILE, _START]).withColumn(
        ROW, F.col(_ID) + F.col(_SHIFT)
    )
    return positioned.drop(_FILE, _START, _ID, _SHIFT), offset, found
