"""CSV tables, through pandas: the one writer and the one reader of every table a run or an
analysis writes (rows are dicts; values written as Python prints them, None as an empty field,
'\\n' line ends), and read back as the files' own text (no type guessing, no NaN)."""
from __future__ import annotations

from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:
    import pandas as pd


def frame(rows: Iterable[dict[str, Any]], columns: Iterable[str] | None = None) -> "pd.DataFrame":
    """Rows as a DataFrame of the objects themselves (dtype object: an int column with a None
    stays ints, not floats). columns: their order; keys not named are left out."""
    import pandas as pd  # here: the hand-off types import this module; most imports never write a table

    rows = list(rows)
    columns = list(columns) if columns is not None else list(rows[0] if rows else [])
    return pd.DataFrame(rows, columns=columns, dtype=object)


def write_csv(target: Path | IO[str], rows: Iterable[dict[str, Any]], columns: Iterable[str] | None = None) -> None:
    """The rows into a CSV file (its folder made) or an open text file."""
    if isinstance(target, (str, Path)):
        Path(target).parent.mkdir(parents=True, exist_ok=True)
    frame(rows, columns).to_csv(target, index=False, lineterminator="\n")


def csv_text(rows: Iterable[dict[str, Any]], columns: Iterable[str] | None = None) -> str:
    return frame(rows, columns).to_csv(index=False, lineterminator="\n")


def read_csv(path: Path | IO[str]) -> list[dict[str, str]]:
    """A CSV file's rows as dicts of its own strings (an empty field is '')."""
    import pandas as pd

    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False).to_dict("records")
    except pd.errors.EmptyDataError:   # a table of no rows and no columns
        return []
