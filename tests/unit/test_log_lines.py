"""The services' log: one JSON object per line (estatedesk.runner.JsonLogFormatter)."""

from __future__ import annotations

import json
import logging

from estatedesk.runner import JsonLogFormatter


def record(message: str, *args, **extra) -> logging.LogRecord:
    made = logging.LogRecord("estatedesk.bus", logging.INFO, __file__, 1, message, args, None)
    made.__dict__.update(extra)
    return made


def test_a_line_is_one_json_object_with_the_events_context():
    line = JsonLogFormatter("callback").format(record("processed %s", "estatedesk.ticket.accepted",
                                                      estate="hx01", ticket="t-1", event_id="e-1"))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry | {"time": None} == {"time": None, "level": "INFO", "service": "callback", "logger": "estatedesk.bus",
                                      "message": "processed estatedesk.ticket.accepted", "estate": "hx01",
                                      "ticket": "t-1", "event_id": "e-1"}


def test_the_time_follows_each_second():
    formatter = JsonLogFormatter("intake")
    first, later = record("a"), record("b")
    later.created = first.created + 1.0
    times = [json.loads(formatter.format(r))["time"] for r in (first, first, later)]
    assert times[0] == times[1] != times[2]


def test_text_that_is_not_unicode_still_makes_a_line():
    line = JsonLogFormatter("intake").format(record("refused %s", "/v1/estates/\ud800"))
    assert json.loads(line)["message"] == "refused /v1/estates/\ud800"
    assert "中文" in JsonLogFormatter("intake").format(record("中文"))  # readable, not escaped
