"""Errors raised by personalign. Every data problem names where it is and what was expected."""

from __future__ import annotations


class PersonalignError(Exception):
    """Base class of personalign's own errors."""


class DataError(PersonalignError, ValueError):
    """A malformed record or table.

    The message names the file, the line (1-based, for line-oriented files) or row (0-based, for tables),
    the field, and what was expected, e.g. ``data.jsonl:17: field 'chosen': expected a non-empty string``.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        row: int | None = None,
        field: str | None = None,
        expected: str | None = None,
    ) -> None:
        self.file, self.line, self.row, self.field, self.expected = file, line, row, field, expected
        self.detail = message
        where = ""
        if file is not None:
            where = str(file)
            if line is not None:
                where += f":{line}"
            elif row is not None:
                where += f": row {row}"
        elif line is not None:
            where = f"line {line}"
        elif row is not None:
            where = f"row {row}"
        parts = []
        if where:
            parts.append(where)
        if field is not None:
            parts.append(f"field '{field}'")
        head = ": ".join(parts)
        text = message
        if expected is not None and "expected" not in message:
            text = f"{message} (expected {expected})"
        super().__init__(f"{head}: {text}" if head else text)


class ConfigError(PersonalignError, ValueError):
    """A model artifact, policy file or option that does not match what the code expects."""


class NotFittedError(PersonalignError, RuntimeError):
    """A model used before ``fit``."""
