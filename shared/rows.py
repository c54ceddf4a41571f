"""Aggregates stored one row each (issue 11): a dataclass whose fields are named as its
table's columns loads from a row (`from_row`) and saves as column values (`values`, enums
as their plain values), so a repository maps it without restating every column."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any


class Row:
    """Mixin for dataclass aggregates whose fields are their table's columns."""

    @classmethod
    def from_row(cls, row: Mapping[str, Any] | Any):
        """From a SQLAlchemy row (or a mapping); columns the dataclass lacks are ignored."""
        mapping = row if isinstance(row, Mapping) else row._mapping
        return cls(**{f.name: mapping[f.name] for f in dataclasses.fields(cls) if f.name in mapping})

    def values(self) -> dict[str, Any]:
        """Every field as a column value (a StrEnum member as its string)."""
        return {f.name: getattr(getattr(self, f.name), "value", getattr(self, f.name))
                for f in dataclasses.fields(self)}
