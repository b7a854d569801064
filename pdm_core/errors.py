"""Errors raised for bad input, always naming where the problem is."""

from __future__ import annotations


class DataValidationError(ValueError):
    """Input data broke a rule.

    The message always starts with ``file[:line][, column 'name']`` so a user can jump to the
    offending spot.

    Args:
        source: File (or other source) name.
        message: What rule was broken, in words.
        line: 1-based line number (row number for Parquet), if the problem is on one line.
        column: Offending column name, if the problem is in one column.
    """

    def __init__(
        self, source: str, message: str, line: int | None = None, column: str | None = None
    ) -> None:
        self.source = source
        self.line = line
        self.column = column
        self.reason = message
        where = source if line is None else f"{source}:{line}"
        if column is not None:
            where += f", column '{column}'"
        super().__init__(f"{where}: {message}")
