"""Aggregates stored one row each (issue 11): a dataclass whose fields are named as its
table's columns loads from a row (`from_row`) and saves as column values (`values`, enums
as their plain values), so a repository maps it without restating every column."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any


@functools.cache
def _columns(cls: type) -> tuple[str, ...]:
    """The dataclass's field names, in order: asked once per class, not per row (a batch
    of a thousand tickets loads and saves a thousand rows)."""
    return tuple(f.name for f in dataclasses.fields(cls))


class Row:
    """Mixin for dataclass aggregates whose fields are their table's columns."""

    @classmethod
    def from_row(cls, row: Mapping[str, Any] | Any):
        """From a SQLAlchemy row (or a mapping); columns the dataclass lacks are ignored."""
        mapping = row if isinstance(row, Mapping) else row._asdict()  # one dict, not a lookup per column
        return cls(**{name: mapping[name] for name in _columns(cls) if name in mapping})

    def values(self) -> dict[str, Any]:
        """Every field as a column value (a StrEnum member as its string)."""
        values = {}
        for name in _columns(type(self)):
            value = getattr(self, name)
            values[name] = getattr(value, "value", value)
        return values
