"""One injectable clock for every service, the demo and the tests.

Services never call `datetime.now()`; they ask their `Clock`. A clock is described by a
short spec string so that separately started processes share the same notion of time:

- ``system``                         real UTC time
- ``accelerated:60@2026-11-22T08:00:00+08:00``
                                     virtual time starts at the given instant when the
                                     clock is first built and runs 60× faster; every
                                     process given the same spec *and* the same anchor
                                     (``;anchor=<unix seconds>``) agrees on the time
- ``file:/path/to/offset``           real time plus an offset in seconds read from the
                                     file (re-read when it changes): tests move time
                                     forward for every process at once by rewriting it
"""

from __future__ import annotations

import datetime as dt
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

UTC = dt.timezone.utc


class Clock(Protocol):
    def now(self) -> dt.datetime: ...

    @property
    def speed(self) -> float: ...

    def spec(self) -> str: ...


class SystemClock:
    speed = 1.0

    def now(self) -> dt.datetime:
        return dt.datetime.now(UTC)

    def spec(self) -> str:
        return "system"


@dataclass
class AcceleratedClock:
    """Virtual time = origin + (real elapsed since anchor) × speed."""

    origin: dt.datetime
    speed: float = 60.0
    anchor: float = field(default_factory=time.time)

    def now(self) -> dt.datetime:
        return (self.origin + dt.timedelta(seconds=(time.time() - self.anchor) * self.speed)).astimezone(UTC)

    def spec(self) -> str:
        return f"accelerated:{self.speed:g}@{self.origin.isoformat()};anchor={self.anchor:.6f}"


@dataclass
class FileOffsetClock:
    path: Path
    speed: float = 1.0
    _mtime: float = -1.0
    _offset: float = 0.0

    def _read(self) -> float:
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            return 0.0
        if mtime != self._mtime:
            try:
                self._offset = float(self.path.read_text().strip() or 0)
            except ValueError:  # half-written file: keep the last good offset
                return self._offset
            self._mtime = mtime
        return self._offset

    def now(self) -> dt.datetime:
        return dt.datetime.now(UTC) + dt.timedelta(seconds=self._read())

    def advance(self, seconds: float) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(str(self._read() + seconds))
        os.replace(tmp, self.path)

    def spec(self) -> str:
        return f"file:{self.path}"


@dataclass
class ManualClock:
    """In-process clock for unit tests: time moves only when told."""

    current: dt.datetime
    speed: float = 1.0

    def now(self) -> dt.datetime:
        return self.current

    def advance(self, **delta: float) -> None:
        self.current += dt.timedelta(**delta)

    def spec(self) -> str:
        return f"manual:{self.current.isoformat()}"


def clock_from_spec(spec: str | None) -> Clock:
    spec = (spec or "system").strip()
    if spec == "system":
        return SystemClock()
    if spec.startswith("file:"):
        return FileOffsetClock(Path(spec.removeprefix("file:")))
    if spec.startswith("accelerated:"):
        body, _, anchor_part = spec.removeprefix("accelerated:").partition(";anchor=")
        speed_text, _, origin_text = body.partition("@")
        origin = dt.datetime.fromisoformat(origin_text) if origin_text else dt.datetime.now(UTC)
        if origin.tzinfo is None:
            origin = origin.replace(tzinfo=UTC)
        anchor = float(anchor_part) if anchor_part else time.time()
        return AcceleratedClock(origin=origin, speed=float(speed_text or 60), anchor=anchor)
    if spec.startswith("manual:"):
        return ManualClock(dt.datetime.fromisoformat(spec.removeprefix("manual:")))
    raise ValueError(f"unknown clock spec {spec!r}: use system, accelerated:N@ISO, or file:PATH")
