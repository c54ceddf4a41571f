"""The shared contract and plumbing without I/O: envelope, policy, calendar, clock, auth."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from shared import auth
from shared.asyncapi import asyncapi_json
from shared.calendar import CalendarOverrides, WorkingCalendar
from shared.clock import AcceleratedClock, FileOffsetClock, ManualClock, SystemClock, clock_from_spec
from hypothesis import given, settings, strategies as st

from shared.events import EVENT_NAMES, PAYLOADS, Accepted, CloudEvent, MalformedEvent, make_event, read_event, subject_for
from shared.limits import json_is_storable_text, text_problem
from shared.policy import DEFAULT_POLICY, effective_policy
from shared.settings import asyncpg_url

CST = dt.timezone(dt.timedelta(hours=8))
NOW = dt.datetime(2026, 11, 22, 9, 30, tzinfo=CST)


def accepted(**overrides) -> Accepted:
    data = dict(ticket_id="t-1", form_number="HX01-2026-000001", kind="repair", channel="phone",
                description="漏水", first_contact="cs01", received_at=NOW)
    return Accepted(**{**data, **overrides})


class TestEnvelope:
    def test_make_event_fills_every_cloudevents_attribute(self):
        event = make_event(accepted(), estate="hx01", actor="cs01", source="intake", time=NOW)
        data = json.loads(event.model_dump_json())
        assert data["specversion"] == "1.0"
        assert data["type"] == "estatedesk.ticket.accepted"
        assert data["source"] == "estatedesk/intake"
        assert data["subject"] == "t-1"
        assert data["datacontenttype"] == "application/json"
        assert data["dataschema"] == "urn:estatedesk:ticket.accepted:v1"
        assert data["estate"] == "hx01" and data["actor"] == "cs01"
        assert data["data"]["form_number"] == "HX01-2026-000001"
        assert event.nats_subject == "estatedesk.hx01.ticket.accepted"

    def test_round_trip_and_typed_payload(self):
        event = make_event(accepted(), estate="hx01", actor="cs01", source="intake", time=NOW)
        again = CloudEvent.model_validate_json(event.model_dump_json())
        assert again == event
        assert isinstance(again.payload(), Accepted)

    def test_every_event_has_a_versioned_schema_and_a_subject(self):
        assert len(EVENT_NAMES) == 23
        for name, model in PAYLOADS.items():
            assert model.event_name == name
            assert model.family == ("audit" if name == "access_refused" else "ticket")
            assert model.dataschema() == f"urn:estatedesk:{model.family}.{name}:v1"
            assert subject_for("hx01", name) == f"estatedesk.hx01.{model.family}.{name}"
            assert model.summary

    @pytest.mark.parametrize("estate", ["HX01", "a.b", "", "a*", "x" * 40, "a b"])
    def test_estate_codes_that_would_break_subjects_are_refused(self, estate):
        with pytest.raises(ValidationError):
            make_event(accepted(), estate=estate, actor="cs01", source="intake", time=NOW)

    def test_payload_contract_violations_are_caught(self):
        event = make_event(accepted(), estate="hx01", actor="cs01", source="intake", time=NOW)
        broken = event.model_copy(update={"data": {**event.data, "kind": "party"}})
        with pytest.raises(ValidationError):
            broken.payload()

    def test_unknown_envelope_attributes_are_refused(self):
        event = make_event(accepted(), estate="hx01", actor="cs01", source="intake", time=NOW)
        data = json.loads(event.model_dump_json()) | {"surprise": 1}
        with pytest.raises(ValidationError):
            CloudEvent.model_validate(data)


def delivered(description: str, *, estate: str = "hx01") -> tuple[str, bytes]:
    """(subject, body) of an `accepted` event as JetStream delivers it, its description as given."""
    event = make_event(accepted(), estate=estate, actor="cs01", source="intake", time=NOW)
    body = json.loads(event.model_dump_json())
    body["data"]["description"] = description
    return event.nats_subject, json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")


class TestReadEvent:
    """`read_event`: what every consumer and `analytics rebuild` accept off the stream."""

    def test_a_good_event_is_read_with_its_payload_validated_once(self):
        event = read_event(*delivered("厨房漏水，请尽快处理"))
        assert event.payload() is event.payload()
        assert event.payload().description == "厨房漏水，请尽快处理"

    def test_a_replaced_data_is_validated_again(self):
        event = read_event(*delivered("漏水"))
        assert event.payload().kind == "repair"
        broken = event.model_copy(update={"data": {**event.data, "kind": "party"}})
        with pytest.raises(ValidationError):
            broken.payload()

    @pytest.mark.parametrize("escaped, why", [
        (r"\u0000", "NUL"), (r"a\u0007b", r"U\+0007"), (r"\u001f", r"U\+001F"), (r"\b", r"U\+0008"),
        (r"x\fy", r"U\+000C"),
    ])
    def test_a_refused_character_escaped_in_the_json_is_a_malformed_event_with_its_envelope(self, escaped, why):
        subject, body = delivered("x")
        body = body.replace(b'"description": "x"', b'"description": "' + escaped.encode() + b'"')
        with pytest.raises(MalformedEvent, match=why) as caught:
            read_event(subject, body)
        assert caught.value.envelope is not None and caught.value.envelope.estate == "hx01"

    @pytest.mark.parametrize("raw", [rb"\ud800", rb"\udc00", b"\x01", b"\xff", b"\xed\xa0\x80"])
    def test_what_the_json_parser_refuses_is_a_malformed_event_without_an_envelope(self, raw):
        subject, body = delivered("x")
        body = body.replace(b'"description": "x"', b'"description": "' + raw + b'"')
        with pytest.raises(MalformedEvent) as caught:
            read_event(subject, body)
        assert caught.value.envelope is None

    def test_an_escaped_storable_character_is_accepted(self):
        subject, body = delivered("x")
        body = body.replace(b'"description": "x"', rb'"description": "caf\u00e9 \t \ud83d\ude00"')
        assert not json_is_storable_text(body)  # walked, and found storable
        assert read_event(subject, body).payload().description == "caf\u00e9 \t \U0001F600"

    def test_an_event_on_another_estates_subject_is_malformed(self):
        _, body = delivered("x")
        with pytest.raises(MalformedEvent, match="arrived on"):
            read_event("estatedesk.hx02.ticket.accepted", body)

    @settings(max_examples=400, deadline=None)
    @given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=()), min_size=1, max_size=40)
           | st.text(alphabet=st.characters(max_codepoint=0x7f), min_size=1, max_size=40))
    def test_the_skipped_walk_refuses_exactly_what_the_walk_refuses(self, description):
        """Escaped (ensure_ascii) or raw, an event is refused exactly when its text is not
        storable (shared.limits.text_problem), whether or not the walk was skipped."""
        event = make_event(accepted(), estate="hx01", actor="cs01", source="intake", time=NOW)
        for ensure_ascii in (True, False):
            body = json.loads(event.model_dump_json())
            body["data"]["description"] = description
            raw = json.dumps(body, ensure_ascii=ensure_ascii).encode("utf-8", "surrogatepass")
            if text_problem(description) is None:
                assert read_event(event.nats_subject, raw).payload().description == description
            else:
                with pytest.raises(MalformedEvent):
                    read_event(event.nats_subject, raw)


def test_committed_asyncapi_document_is_current():
    committed = (Path(__file__).resolve().parents[2] / "docs" / "asyncapi.json").read_text()
    assert committed == asyncapi_json(), "docs/asyncapi.json is stale: run `estatedesk asyncapi` and commit it"


def test_asyncapi_documents_every_event_and_consumer():
    document = json.loads(asyncapi_json())
    channels = document["channels"]
    for name, model in PAYLOADS.items():
        assert f"estatedesk.{model.family}.{name}" in channels
    for service in ("intake", "dispatch", "callback", "archive", "analytics"):
        assert any(key.startswith(f"{service}-") and key.endswith(":consume") for key in channels), service


class TestPolicy:
    def test_defaults_are_the_rules_numbers(self):
        p = DEFAULT_POLICY
        assert (p.clocks.arrival_minutes_emergency, p.clocks.arrival_minutes_general,
                p.clocks.arrival_minutes_simple, p.clocks.arrival_minutes_commissioned_immediate) == (0, 60, 20, 15)
        assert p.clocks.repair_slip_return_hours == 24
        assert (p.clocks.reply_hours_urgent, p.clocks.reply_working_days_not_urgent) == (2, 2)
        assert (p.clocks.tracking_working_days_department, p.clocks.tracking_working_days_company) == (3, 7)
        assert p.escalation.nonconformity_loss_cny == 500
        assert p.callback.complaint_working_days == 2 and p.callback.activity_rate_percent == 70
        assert p.intake.invalid_complaint_notice_working_days == 1

    def test_estate_overrides_company_overrides_defaults(self):
        p = effective_policy({"clocks": {"arrival_minutes_general": 45, "arrival_minutes_simple": 15}},
                             {"clocks": {"arrival_minutes_general": 30}})
        assert p.clocks.arrival_minutes_general == 30
        assert p.clocks.arrival_minutes_simple == 15
        assert p.clocks.repair_slip_return_hours == 24

    def test_bad_policies_are_refused(self):
        with pytest.raises(ValidationError):
            effective_policy({"clocks": {"arrival_minutes_generl": 45}})
        with pytest.raises(ValidationError):
            effective_policy(None, {"clocks": {"arrival_minutes_general": "soon"}})


class TestCalendar:
    cal = WorkingCalendar()

    def test_statutory_holiday_and_make_up_saturday(self):
        assert not self.cal.is_working_day(dt.date(2026, 10, 1))  # National Day
        assert self.cal.is_working_day(dt.date(2026, 10, 10))  # make-up Saturday
        assert not self.cal.is_working_day(dt.date(2026, 10, 11))  # ordinary Sunday

    def test_add_working_days_skips_the_national_day_holiday(self):
        result = self.cal.add_working_days(dt.datetime(2026, 9, 30, 10, tzinfo=CST), 2)
        assert result.value == dt.datetime(2026, 10, 9, 10, tzinfo=CST)
        assert not result.provisional

    def test_unpublished_year_uses_the_projected_calendar_and_is_provisional(self):
        result = self.cal.add_working_days(dt.datetime(2026, 12, 31, 10, tzinfo=CST), 2)
        assert result.value.date() == dt.date(2027, 1, 5)  # Fri 1st is New Year's Day: Mon 4th, Tue 5th
        assert result.provisional

    def test_company_loaded_year_is_no_longer_provisional(self):
        cal = WorkingCalendar(CalendarOverrides(days_off=frozenset({dt.date(2027, 1, 1)}), loaded_years=frozenset({2027})))
        result = cal.add_working_days(dt.datetime(2026, 12, 31, 10, tzinfo=CST), 2)
        assert result.value.date() == dt.date(2027, 1, 5)
        assert not result.provisional

    def test_company_overrides_win(self):
        cal = WorkingCalendar(CalendarOverrides(days_off=frozenset({dt.date(2026, 11, 23)}),
                                                workdays=frozenset({dt.date(2026, 11, 22)})))
        assert not cal.is_working_day(dt.date(2026, 11, 23))
        assert cal.is_working_day(dt.date(2026, 11, 22))

    @pytest.mark.parametrize("year", [1900, 1949, 2101, 2500, 9998])
    def test_dates_far_outside_the_known_calendar_never_crash(self, year):
        result = self.cal.add_working_days(dt.datetime(year, 6, 1, 9, tzinfo=CST), 3)
        assert result.provisional
        assert self.cal.working_days_between(dt.date(year, 6, 1), result.value.date()) == 3

    def test_overrides_round_trip_as_data(self):
        overrides = CalendarOverrides(days_off=frozenset({dt.date(2027, 1, 1)}), loaded_years=frozenset({2027}))
        assert CalendarOverrides.from_data(overrides.to_data()) == overrides

    def test_next_opening_after_an_off_hours_request(self):
        eve_of_national_day = dt.datetime(2026, 9, 30, 22, 0, tzinfo=CST)
        assert self.cal.next_working_day_start(eve_of_national_day, dt.time(8, 30)) == dt.datetime(2026, 10, 8, 8, 30, tzinfo=CST)
        early = dt.datetime(2026, 11, 23, 6, 0, tzinfo=CST)
        assert self.cal.next_working_day_start(early, dt.time(8, 30)) == dt.datetime(2026, 11, 23, 8, 30, tzinfo=CST)


class TestClock:
    def test_specs(self, tmp_path):
        assert isinstance(clock_from_spec(None), SystemClock)
        accelerated = clock_from_spec("accelerated:60@2026-11-22T08:00:00+08:00;anchor=1000")
        assert isinstance(accelerated, AcceleratedClock) and accelerated.speed == 60
        again = clock_from_spec(accelerated.spec())
        assert again.anchor == accelerated.anchor and again.origin == accelerated.origin
        assert isinstance(clock_from_spec(f"file:{tmp_path / 'o'}"), FileOffsetClock)
        with pytest.raises(ValueError):
            clock_from_spec("sundial")

    def test_accelerated_clock_runs_fast(self, monkeypatch):
        import time as time_module

        clock = AcceleratedClock(origin=NOW, speed=60, anchor=1000.0)
        monkeypatch.setattr(time_module, "time", lambda: 1010.0)
        assert clock.now() == NOW + dt.timedelta(minutes=10)

    def test_file_clock_is_shared_through_the_file(self, tmp_path):
        path = tmp_path / "offset"
        one, two = FileOffsetClock(path), FileOffsetClock(path)
        before = two.now()
        one.advance(3600)
        assert two.now() - before >= dt.timedelta(hours=1)

    def test_manual_clock(self):
        clock = ManualClock(NOW)
        clock.advance(minutes=5)
        assert clock.now() == NOW + dt.timedelta(minutes=5)


class TestAuth:
    key = "k" * 40

    def test_round_trip(self):
        token = auth.issue_token(self.key, "cs01", ["customer_service"], ["hx01"], name="王")
        who = auth.verify_token(self.key, token)
        assert who.staff_id == "cs01" and who.name == "王"
        assert who.may_act_for("hx01") and not who.may_act_for("hx02")

    def test_company_wide_roles_see_every_estate(self):
        who = auth.verify_token(self.key, auth.issue_token(self.key, "qm", ["quality_manager"], ["*"]))
        assert who.company_wide and who.may_act_for("anything")

    def test_company_wide_role_for_one_estate_is_refused_at_issue(self):
        # Issue 9: `--role quality_manager --estate hx01` silently widened to every estate.
        with pytest.raises(ValueError, match=r"--estate '\*'"):
            auth.issue_token(self.key, "q1", ["quality_manager"], ["hx01"])

    def test_estate_list_is_honoured_whatever_the_roles(self):
        import jwt
        claims = {"iss": auth.ISSUER, "sub": "q1", "roles": ["quality_manager"], "estates": ["hx01"], "exp": 2**31}
        who = auth.verify_token(self.key, jwt.encode(claims, self.key, algorithm="HS256"))
        assert who.may_act_for("hx01") and not who.may_act_for("ch02")

    def test_out_of_scope_is_403_with_reason(self):
        who = auth.verify_token(self.key, auth.issue_token(self.key, "cs01", ["customer_service"], ["hx01"]))
        with pytest.raises(auth.AuthError) as error:
            who.require_estate("hx02")
        assert error.value.status == 403 and "hx02" in error.value.reason

    def test_bad_tokens_are_401(self):
        token = auth.issue_token(self.key, "cs01", ["customer_service"], ["hx01"])
        for header in (None, "Basic abc", "Bearer ", f"Bearer {token}x"):
            with pytest.raises(auth.AuthError) as error:
                auth.principal_from_header(self.key, header)
            assert error.value.status == 401
        with pytest.raises(auth.AuthError):
            auth.verify_token("other-key" * 5, token)
        expired = auth.issue_token(self.key, "cs01", ["customer_service"], ["hx01"],
                                   now=dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc))
        with pytest.raises(auth.AuthError, match="expired"):
            auth.verify_token(self.key, expired)

    def test_unknown_roles_are_refused_when_issuing(self):
        with pytest.raises(ValueError):
            auth.issue_token(self.key, "x", ["emperor"], [])


def test_asyncpg_url():
    assert asyncpg_url("postgresql://postgres:@/postgres?host=/tmp/x") == "postgresql+asyncpg://postgres:@/postgres?host=/tmp/x"
    assert asyncpg_url("postgres://u:p@h:5/d") == "postgresql+asyncpg://u:p@h:5/d"
    with pytest.raises(ValueError):
        asyncpg_url("mysql://x")


class TestDatabaseUnavailable:
    """A request that meets a database away gets 503 (try again), never a bare 500:
    `shared.service.database_unavailable` tells "not there" from "refused the statement"."""

    @staticmethod
    def wrapped(orig: Exception, invalidated: bool = False):
        import sqlalchemy as sa

        return sa.exc.DBAPIError("SELECT 1", {}, orig, connection_invalidated=invalidated)

    @staticmethod
    def with_sqlstate(code: str) -> Exception:
        error = Exception("server says")
        error.sqlstate = code
        return error

    def test_what_means_the_database_is_not_there(self):
        from shared.service import database_unavailable

        assert database_unavailable(ConnectionRefusedError(111, "Connection refused"))
        assert database_unavailable(self.wrapped(self.with_sqlstate("57P03")))  # starting up
        assert database_unavailable(self.wrapped(self.with_sqlstate("57P01")))  # admin shutdown
        assert database_unavailable(self.wrapped(self.with_sqlstate("08006")))  # connection failure
        assert database_unavailable(self.wrapped(Exception("gone"), invalidated=True))
        cause = Exception("adapter")
        cause.__cause__ = ConnectionResetError()
        assert database_unavailable(self.wrapped(cause))
        import asyncpg

        broken = Exception("adapter")
        broken.__cause__ = asyncpg.exceptions.InternalClientError("cannot switch to state 12")
        assert database_unavailable(self.wrapped(broken))
        import sqlalchemy as sa

        assert database_unavailable(sa.exc.PendingRollbackError("Can't reconnect until invalid transaction is rolled back"))

    def test_what_is_a_refused_statement_not_an_outage(self):
        from shared.service import database_unavailable

        assert not database_unavailable(self.wrapped(self.with_sqlstate("23505")))  # unique violation
        assert not database_unavailable(self.wrapped(self.with_sqlstate("22001")))  # too long
        assert not database_unavailable(self.wrapped(Exception("no sqlstate")))
        assert not database_unavailable(ValueError("not a database error"))


def test_rows_json_writes_what_the_standard_encoder_wrote():
    """The rows PostgreSQL reads back (`jsonb_populate_recordset`): times with their offset
    and microseconds only when there are some, dates, decimals as text, UTF-8 text, enums
    by value — the same text as `json.dumps(..., default=json_default)` wrote before."""
    import zoneinfo
    from decimal import Decimal

    from shared.db import json_default, rows_json
    from shared.lifecycle import CallbackState

    rows = [{"at": dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC),
             "local": dt.datetime(2026, 12, 1, 18, 0, 0, 123, tzinfo=zoneinfo.ZoneInfo("Asia/Shanghai")),
             "naive": dt.datetime(2026, 12, 1, 10, 0, 5), "day": dt.date(2026, 1, 2), "amount": Decimal("1.50"),
             "text": "漏水 \"quoted\" \\ \n", "state": CallbackState.pending, "none": None, "list": [1, 2.5, True],
             "nested": {"x": [{"y": dt.date(2026, 2, 3)}]}}]
    assert rows_json(rows) == json.dumps(rows, default=json_default, ensure_ascii=False, separators=(",", ":"))
    assert json.loads(rows_json(rows))[0]["local"] == "2026-12-01T18:00:00.000123+08:00"
    with pytest.raises(TypeError):
        rows_json([{"what": object()}])


def test_a_batch_shares_one_unit_of_work_made_at_its_first_use():
    from types import SimpleNamespace

    from shared.uow import of_batch

    made: list = []

    def make(session):
        made.append(session)
        return object()

    batch, other = SimpleNamespace(info={}), SimpleNamespace(info={})
    first = of_batch(batch, "svc.uow", make)
    assert of_batch(batch, "svc.uow", make) is first and made == [batch]
    assert of_batch(other, "svc.uow", make) is not first and made == [batch, other]
    batch.info.pop("svc.uow")  # the batch's flush: the next batch starts afresh
    assert of_batch(batch, "svc.uow", make) is not first


class TestIgnoreRule:
    """`EventConsumer.ignore`: what happens when the predicate itself raises."""

    @staticmethod
    def consumer(predicate):
        from types import SimpleNamespace

        from shared.bus import EventConsumer

        return EventConsumer(service=SimpleNamespace(name="probe"), handler=lambda session, event: None,
                             events=("accepted",), ignore=predicate)

    def test_a_predicate_fault_on_a_well_formed_event_is_logged_and_the_event_handled(self, caplog):
        event = make_event(accepted(), estate="hx01", actor="cs01", source="intake", time=NOW)
        with caplog.at_level("ERROR", logger="estatedesk.bus"):
            assert self.consumer(lambda e: e.data["no such field"])._ignores(event) is False
        (record,) = [r for r in caplog.records if "ignore rule of probe-accepted" in r.getMessage()]
        assert record.exc_info and record.event_id == event.id

    def test_an_unreadable_event_is_left_to_the_contract_check_without_a_log(self, caplog):
        event = make_event(accepted(), estate="hx01", actor="cs01", source="intake", time=NOW)
        event.data.pop("description")
        with caplog.at_level("ERROR", logger="estatedesk.bus"):
            assert self.consumer(lambda e: e.data["description"].startswith("x"))._ignores(event) is False
        assert not [r for r in caplog.records if "ignore rule" in r.getMessage()]

    def test_what_the_predicate_names_is_ignored(self):
        event = make_event(accepted(), estate="hx01", actor="cs01", source="intake", time=NOW)
        assert self.consumer(lambda e: True)._ignores(event) is True
        assert self.consumer(None)._ignores(event) is False
