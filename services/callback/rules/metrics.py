"""Callback metrics (RULES.md §3 Who, Satisfaction survey): the callback rate and the
satisfaction rate."""

from __future__ import annotations


# --- callback metrics --------------------------------------------------------------------


def _ratio(part: int, whole: int, part_name: str, whole_name: str) -> float | None:
    if part < 0 or whole < 0:
        raise ValueError(f"{part_name} and {whole_name} must not be negative ({part}, {whole})")
    if part > whole:
        raise ValueError(f"{part_name} ({part}) cannot exceed {whole_name} ({whole})")
    if whole == 0:
        return None  # nothing was required: no rate, rather than 0 % or 100 %
    return part / whole


def callback_rate(required: int, done: int) -> float | None:
    """Share (0..1) of required callbacks that were made; None when none was required.
    `done` counts only callbacks that were required (an extra call to an activity outside
    the sample is not part of the rate)."""
    return _ratio(done, required, "done", "required")


def satisfaction_rate(satisfied: int, answered: int) -> float | None:
    """Share (0..1) of answered callbacks whose owner was satisfied; None when none answered."""
    return _ratio(satisfied, answered, "satisfied", "answered")
