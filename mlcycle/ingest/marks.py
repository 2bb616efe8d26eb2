"""The decimal mark a number column shows, as evidence a reader gathers and judges: etl
over a whole file, score's pandas chunks and Spark's splits over their pieces, merged
(`Marks.merge`), with the same two checks (`check_marks`, `check_file_marks`)."""

from __future__ import annotations

from dataclasses import dataclass

from mlcycle.errors import MlcycleError


@dataclass
class Marks:
    """What a numeric column shows of its decimal mark: the first value of each kind and
    its row. A reader that sees a file in pieces (score's chunks, Spark's splits) merges
    the pieces' marks and decides with `check_marks` as etl decides over the whole file."""

    comma: tuple[str, int] | None = None  # a decimal comma: '36,5', '1 234,5', '1,234'
    sure_comma: tuple[str, int] | None = None  # one that cannot group thousands: '36,5'
    dot: tuple[str, int] | None = None  # a decimal point: '36.5', '1,234.5'

    @property
    def mark(self) -> str | None:
        """',' when the column shows a decimal comma; else None (a point or no mark:
        read alike)."""
        return "," if self.comma else None

    @property
    def ambiguous(self) -> tuple[str, int] | None:
        """A comma that may group thousands ('1,234'), when no comma of the column is
        surely decimal."""
        return self.comma if self.comma and not self.sure_comma else None

    def merge(self, other: Marks) -> Marks:
        """Both pieces' evidence: the earliest value of each kind."""

        def first(a, b):
            return min((x for x in (a, b) if x), key=lambda x: x[1], default=None)

        return Marks(
            first(self.comma, other.comma),
            first(self.sure_comma, other.sure_comma),
            first(self.dot, other.dot),
        )


def check_marks(name: str, marks: Marks, where: str, rows: bool = False) -> None:
    """A column showing both decimal marks is refused, naming both values (and their
    rows, for a reader that names rows)."""
    if marks.comma and marks.dot:
        comma, dot = (_shown(v, rows) for v in (marks.comma, marks.dot))
        raise MlcycleError(f"column {name!r} of the {where} mixes decimal marks: {comma} and {dot}")


def check_file_marks(marks: dict[str, Marks], delimiter: str, where: str, rows=False) -> None:
    """A comma that may be a thousands separator ('1,234') in a file that is not
    `;`-separated (where the decimal comma is the convention) and shows no surely
    decimal comma in any column is an error, not a guess."""
    if delimiter == ";" or any(m.sure_comma for m in marks.values()):
        return
    for name, column in marks.items():
        if column.ambiguous:
            example = column.ambiguous[0]
            raise MlcycleError(
                f"{where} is ambiguous: in column {name!r}, {_shown(column.ambiguous, rows)} "
                f"may be a decimal comma ({example.replace(',', '.')}) or a thousands "
                f"separator ({example.replace(',', '')}); write it without thousands separators"
            )


def _shown(value: tuple[str, int], rows: bool) -> str:
    return f"{value[0]!r} (row {value[1]})" if rows else repr(value[0])
