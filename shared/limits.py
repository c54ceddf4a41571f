"""The limits of every field, declared once: the API models, the table columns (and their
migrations) and the event payloads all take them from here, so nothing the API accepts
can overflow a column or break a downstream consumer.

Each limit is a constant (for `sa.String(...)`) and, where a value travels through the
API or an event, an annotated Pydantic type that enforces it:

- text refuses NUL (PostgreSQL cannot store it) and lone surrogates (not encodable as
  UTF-8), anywhere in a model, by `Contract`'s check of every string it is given;
- codes that are joined into keys (estate, department, unit parts) have a character set
  that cannot collide with the joiner;
- money is a `Decimal` of at most `MONEY_DIGITS` digits with two places, sent as a string;
- every instant is time-zone aware and inside `INSTANT_MIN`..`INSTANT_MAX`, far enough
  from the calendar's ends that a deadline computed from it can never overflow;
- every time zone is a name the tz database knows.

Errors: each type raises pydantic's ``ValueError`` with a readable message; the HTTP
layer turns it into a 422 naming the field (see `shared.service`).
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Annotated, Any
from zoneinfo import available_timezones

from pydantic import (
    AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, PlainSerializer, ValidationInfo, model_validator,
)

# --- lengths (characters) ------------------------------------------------------------------
ESTATE_CODE_MAX = 32
DEPARTMENT_CODE_MAX = 32
ID_MAX = 64  # staff ids, ticket ids, owner ids, callback ids, record numbers
NAME_MAX = 128  # a person's or a department's name
CATEGORY_MAX = 64
CODE_MAX = 32  # enum-like codes: roles, clocks, rungs, kinds
BUILDING_MAX = 32
UNIT_PART_MAX = 16  # building, entrance and room parts of a unit code
UNIT_CODE_MAX = 64  # building-entrance-room
SHORT_TEXT_MAX = 500  # a location, a person involved, an attachment reference
TEXT_MAX = 5000  # a reason, a note, an opinion, a cause
DESCRIPTION_MAX = 20000
CLIENT_ID_MAX = 128  # a caller's idempotency key
PHONE_MAX = 32
ID_NUMBER_MAX = 32
# Countersign-form numbers are ESTATE-YEAR-sequence; the sequence is at most this wide.
FORM_SEQUENCE_DIGITS_MIN = 4
FORM_SEQUENCE_DIGITS_MAX = 10
FORM_NUMBER_MAX = ESTATE_CODE_MAX + 1 + 4 + 1 + FORM_SEQUENCE_DIGITS_MAX  # 48
FORM_NUMBER_COLUMN = 64  # the column keeps room above FORM_NUMBER_MAX
assert FORM_NUMBER_MAX <= FORM_NUMBER_COLUMN

# --- list pages ----------------------------------------------------------------------------
PAGE_DEFAULT = 200  # lines a paged list returns when the caller names no limit
PAGE_MAX = 1000  # the most lines one page may ask for: a response of bounded size and cost
ROW_ID_MAX = 2**63 - 1  # a stored row's number (BIGINT) or a sequence used as a cursor

# --- money (CNY) ---------------------------------------------------------------------------
MONEY_DIGITS = 12  # NUMERIC(12, 2): up to 9 999 999 999.99
MONEY_PLACES = 2
MONEY_MAX = Decimal(10) ** (MONEY_DIGITS - MONEY_PLACES) - Decimal("0.01")
QUANTITY_MAX = Decimal(10000)  # items or material units on one bill line

# --- instants ------------------------------------------------------------------------------
# Plausible for anything an owner or a clerk types: a deadline of years of working days
# after INSTANT_MAX still fits in a datetime.
INSTANT_MIN = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)
INSTANT_MAX = dt.datetime(2100, 1, 1, tzinfo=dt.timezone.utc)

ESTATE_CODE_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,%d}$" % (ESTATE_CODE_MAX - 1)
ESTATE_CODE = re.compile(ESTATE_CODE_PATTERN)
DEPARTMENT_CODE_PATTERN = r"^[a-z0-9][a-z0-9_]{0,%d}$" % (DEPARTMENT_CODE_MAX - 1)
# A unit code joins its parts with "-", so no part may hold one (or a space or slash).
UNIT_PART_PATTERN = r"^[^-\s/]+$"


# C0 control characters other than tab, line feed and carriage return: nobody types
# them, PostgreSQL refuses NUL, and a worksheet or a printed form cannot hold the rest.
CONTROL_CHARACTERS = re.compile(r"[\x01-\x08\x0b\x0c\x0e-\x1f]")


# One scan for what `text_problem` refuses (NUL included), so ordinary text costs one search.
_REFUSED_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def text_problem(value: str) -> str | None:
    """Why `value` cannot be stored as text, or None: NUL, another C0 control character,
    or a lone surrogate."""
    if _REFUSED_CHARACTERS.search(value) is not None:
        if "\x00" in value:
            return "must not contain the NUL character (U+0000)"
        control = CONTROL_CHARACTERS.search(value)
        return f"must not contain the control character U+{ord(control.group()):04X}"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "must not contain a lone surrogate (not valid Unicode text)"
    return None


def _walk(value: Any, path: tuple | None) -> None:
    """Raise ValueError naming the first string in `value` that is not storable text. The
    path (`a.b[0]`) is kept as a chain of (parent, step) pairs and spelled out only for
    the error: every event and request passes here."""
    if isinstance(value, str):
        problem = text_problem(value)
        if problem:
            raise ValueError(f"{_spelled(path) or 'text'} {problem}")
    elif isinstance(value, dict):
        for key, item in value.items():
            _walk(key, path)
            if not isinstance(item, (int, float, bool, type(None))):
                _walk(item, (path, str(key)))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _walk(item, (path, [index]))


def _spelled(path: tuple | None) -> str:
    steps = []
    while path is not None:
        path, step = path
        steps.append(step)
    where = ""
    for step in reversed(steps):
        where = f"{where}[{step[0]}]" if isinstance(step, list) else (f"{where}.{step}" if where else step)
    return where


# The validation context's key saying the data came from JSON that `json_is_storable_text`
# passed: the walk over every string is skipped (it would find nothing).
TEXT_CHECKED = "storable_text_checked"


# The JSON escapes that can spell a refused character: \u (\u0000 and the rest) and the
# short forms of backspace (\b, U+0008) and form feed (\f, U+000C).
_REFUSABLE_ESCAPE = re.compile(rb"\\[ubf]")


def json_is_storable_text(raw: bytes) -> bool:
    """True when every string that pydantic's JSON parser (jiter) can read out of `raw` is
    storable text, without reading it: the parser itself refuses raw control characters,
    bytes that are not UTF-8 and lone surrogate escapes, so the only ways left for NUL or
    another refused character are the escapes ``\\u....``, ``\\b`` and ``\\f``. False is
    "walk it", not "refuse it": an escaped character may be perfectly storable."""
    return _REFUSABLE_ESCAPE.search(raw) is None


class StorableText(BaseModel):
    """Every string given to the model, however deeply nested, must be storable text
    (skipped when the validation context holds `TEXT_CHECKED`)."""

    @model_validator(mode="before")
    @classmethod
    def _storable_text(cls, data: Any, info: ValidationInfo) -> Any:
        if not (info.context and info.context.get(TEXT_CHECKED)):
            _walk(data, None)
        return data


class Contract(StorableText):
    """Base of every API input model: storable text, and no field the API does not know."""

    model_config = ConfigDict(extra="forbid")


def _in_window(value: dt.datetime) -> dt.datetime:
    if not INSTANT_MIN <= value < INSTANT_MAX:
        raise ValueError(
            f"{value.isoformat()} lies outside the plausible window {INSTANT_MIN.date()} – {INSTANT_MAX.date()}"
        )
    return value


def _known_zone(name: str) -> str:
    if name not in _zones():
        raise ValueError(f"{name!r} is not a time zone of the tz database (e.g. Asia/Shanghai)")
    return name


_ZONES: set[str] = set()


def _zones() -> set[str]:
    if not _ZONES:
        _ZONES.update(available_timezones())
    return _ZONES


def _money_string(value: Decimal) -> str:
    return format(value.quantize(Decimal("0.01")), "f")


Instant = Annotated[AwareDatetime, AfterValidator(_in_window)]
"""A time-zone-aware instant inside the plausible window."""

TimeZoneName = Annotated[str, AfterValidator(_known_zone)]
Money = Annotated[
    Decimal,
    # No max_digits: the bound says the allowed range, and implies the digits.
    Field(ge=0, le=MONEY_MAX, decimal_places=MONEY_PLACES,
          description=f"CNY with two decimal places, 0 – {MONEY_MAX}; sent as a string"),
    PlainSerializer(_money_string, return_type=str, when_used="json"),
]
Quantity = Annotated[Decimal, Field(gt=0, le=QUANTITY_MAX, decimal_places=MONEY_PLACES,
                                    description=f"more than 0, at most {QUANTITY_MAX}, two decimal places")]
Day = Annotated[dt.date, AfterValidator(lambda day: _in_window(
    dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc)).date())]
"""A calendar day inside the plausible window."""
RowId = Annotated[int, Field(ge=1, le=ROW_ID_MAX, description="A stored row's number (a positive 64-bit integer)")]
EstateCode = Annotated[str, Field(pattern=ESTATE_CODE_PATTERN, max_length=ESTATE_CODE_MAX)]
DepartmentCode = Annotated[str, Field(min_length=1, max_length=DEPARTMENT_CODE_MAX)]
StaffId = Annotated[str, Field(min_length=1, max_length=ID_MAX)]
Identifier = Annotated[str, Field(min_length=1, max_length=ID_MAX)]
PersonName = Annotated[str, Field(min_length=1, max_length=NAME_MAX)]
Category = Annotated[str, Field(min_length=1, max_length=CATEGORY_MAX)]
UnitPart = Annotated[str, Field(min_length=1, max_length=UNIT_PART_MAX, pattern=UNIT_PART_PATTERN,
                                description="One part of a unit code; no '-', space or '/'")]


def text(max_length: int, min_length: int = 1):
    """A text field of at most `max_length` characters (NUL and lone surrogates are refused
    by `Contract`)."""
    return Annotated[str, Field(min_length=min_length, max_length=max_length)]
