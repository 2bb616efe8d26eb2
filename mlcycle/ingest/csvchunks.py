"""A user's CSV read chunk by chunk with etl's rules (`mlcycle.ingest.csvread`): what
`score` reads, so a file etl accepts is scored as etl would have read it.

The file's encoding (a BOM, else UTF-8 if the whole file decodes, else cp1252) and its
delimiter are found once, from the head and a streamed pass; then pandas reads every
field as the string it is, `CHUNK_ROWS` at a time, so memory stays what one chunk needs.
Each chunk's numeric columns go through `csvread.read_column` (decimal mark, grouped
thousands, placeholders such as `?`, `#N/A`, `NA`, `n/a` read as missing, infinities),
and infinities become missing values, counted, as etl's `conform` makes them; text
columns get etl's missing markers. A value that is not a number is refused naming the
file, the column and the row."""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mlcycle.errors import MlcycleError
from mlcycle.ingest import csvread

# Bytes looked at for the delimiter and the header: csvread's own sample size.
HEAD_BYTES = csvread.SNIFF_CHARS
_CODECS = {"utf-8 with BOM": "utf-8-sig", "utf-16": "utf-16"}


@dataclass(frozen=True)
class Dialect:
    """How a file is written: what etl's reader would find in it."""

    encoding: str  # as csvread names it: utf-8, utf-8 with BOM, cp1252...
    delimiter: str
    columns: list[str]

    @property
    def codec(self) -> str:
        """The Python codec that reads it."""
        return _CODECS.get(self.encoding, self.encoding)


def sniff(path: Path, role: str = "input") -> Dialect:
    """Encoding, delimiter and header of the file, refusing what is missing, a folder,
    Parquet, binary, empty or a header without rows, in one line each."""
    where = f"{role} file {path}"
    if path.is_dir():
        raise MlcycleError(
            f"{role} {path} is a folder: engine=pandas reads one CSV file; pass a file, or "
            "engine=spark to read a folder of parts"
        )
    if not path.is_file():
        raise MlcycleError(f"{role} file not found: {path}")
    try:
        with path.open("rb") as fh:
            head = fh.read(HEAD_BYTES)
    except OSError as exc:
        raise MlcycleError(f"{where} cannot be read: {exc.strerror}") from exc
    if head.startswith(b"PAR1"):
        raise MlcycleError(
            f"{where} is Parquet: engine=pandas reads CSV; use engine=spark for Parquet"
        )
    text, encoding = csvread.decode(head, where)
    if encoding == "utf-8" and len(head) == HEAD_BYTES and not _all_utf8(path):
        encoding = "cp1252"  # a byte further down is not UTF-8: as etl reads the whole
        text = head.decode("cp1252", errors="replace")
    if len(head) == HEAD_BYTES:  # the last line of the head may be cut
        text = text[: text.rfind("\n") + 1] or text
    delimiter = csvread.sniff_delimiter(text, where)
    strings = csvread.read_strings(text, delimiter, where)
    if strings.empty:
        raise MlcycleError(f"{where} has a header but no rows")
    return Dialect(encoding, delimiter, [str(c) for c in strings.columns])


def _all_utf8(path: Path) -> bool:
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with path.open("rb") as fh:
            while block := fh.read(1 << 20):
                decoder.decode(block)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def read_chunks(
    path: Path, dialect: Dialect, columns: list[str], chunk_rows: int, role: str = "input"
) -> Iterator[pd.DataFrame]:
    """The columns asked for, every field a string (nothing guessed), chunk by chunk."""
    reader = pd.read_csv(
        path,
        sep=dialect.delimiter,
        encoding=dialect.codec,
        usecols=columns,
        dtype=str,
        keep_default_na=False,
        na_filter=False,
        index_col=False,
        chunksize=chunk_rows,
    )
    try:
        with reader:
            yield from reader
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise MlcycleError(f"{role} file {path} cannot be read as CSV: {exc}") from exc


@dataclass
class Numbers:
    """A numeric column of one chunk as etl reads it: floats, no infinity."""

    values: pd.Series  # float64, missing values NaN
    placeholders: int  # placeholders read as missing
    infinite: int  # infinities read as missing
    marks: csvread.Marks = field(default_factory=csvread.Marks)  # decimal marks seen


def numbers(values: pd.Series, where: str, first_row: int) -> Numbers:
    """One chunk's column of strings as numbers, with etl's rules; anything else is
    refused naming the column and the first row holding it (`first_row` is the chunk's
    first row in the file)."""
    try:
        column = csvread.read_column(values, where)
    except MlcycleError as exc:
        raise _refusal(values, where, first_row) or exc from None
    if not column.numeric:
        raise _refusal(values, where, first_row) or MlcycleError(
            f"column {values.name!r} of the {where} should be numeric"
        )
    out = column.values.astype("float64")
    infinite = np.isinf(out.to_numpy())
    return Numbers(out.mask(infinite), column.placeholders, int(infinite.sum()), column.evidence)


class FileMarks:
    """The decimal marks of a file read in chunks, decided as etl decides over the whole
    file: each chunk reads its numbers with the mark it shows (the same values, as long
    as the file shows one mark per column), and the marks of every chunk, merged, must
    pass etl's checks (`csvread.check_marks`, `csvread.check_file_marks`) once the last
    chunk is read. Nothing is written before that, so a file etl refuses is refused
    whole, naming the column and the rows of the values that disagree."""

    def __init__(self, path: Path, dialect: Dialect, role: str = "input"):
        self.path, self.dialect, self.where = path, dialect, f"{role} file {path}"
        self.marks: dict[str, csvread.Marks] = {}

    def add(self, column: str, marks: csvread.Marks) -> None:
        self.marks[column] = self.marks.get(column, csvread.Marks()).merge(marks)
        csvread.check_marks(column, self.marks[column], self.where, rows=True)

    def check(self, chunk_rows: int) -> None:
        """etl's whole-file check of a comma that may group thousands. Only when one of
        the columns read shows one, and none a surely decimal comma, are the file's other
        columns read too (etl's evidence is every column's)."""
        marks = self.marks
        unsure = not any(m.sure_comma for m in marks.values())
        if unsure and any(m.ambiguous for m in marks.values()) and self.dialect.delimiter != ";":
            others = [c for c in self.dialect.columns if c not in marks]
            marks = marks | self._other_marks(others, chunk_rows)
        csvread.check_file_marks(marks, self.dialect.delimiter, self.where, rows=True)

    def _other_marks(self, columns: list[str], chunk_rows: int) -> dict[str, csvread.Marks]:
        found: dict[str, csvread.Marks] = {}
        if not columns:
            return found
        for chunk in read_chunks(self.path, self.dialect, columns, chunk_rows):
            for name in columns:
                try:
                    column = csvread.read_column(chunk[name], self.where)
                except MlcycleError:
                    continue  # a column score does not read is not score's to judge
                if column.numeric:
                    found[name] = found.get(name, csvread.Marks()).merge(column.evidence)
        return found


def _refusal(values: pd.Series, where: str, first_row: int) -> MlcycleError | None:
    text = values.str.strip()
    missing = text.eq("") | text.str.lower().isin(csvread.PLACEHOLDERS)
    bad = np.flatnonzero((~missing & ~csvread.is_number(values)).to_numpy())
    if not len(bad):
        return None
    row = first_row + int(bad[0])
    return MlcycleError(
        f"column {values.name!r} of the {where} should be numeric but holds "
        f"{values.iloc[bad[0]]!r} at row {row} (line {row + 2}); "
        f"{len(bad)} such value(s) in rows {first_row}-{first_row + len(values) - 1}; "
        "nothing was written"
    )


def text(values: pd.Series) -> pd.Series:
    """A text column with etl's missing markers as None, the rest as written."""
    kept = values.where(~values.isin(csvread.TEXT_MISSING))
    return kept.astype(object).where(kept.notna(), None)
