"""`estatedesk dead-letters list|show|replay`: the operator's view of what the services set
aside, and the way to put it back once the cause is fixed.

A replay re-publishes the stored body onto its subject in the ticket stream under a new
`Nats-Msg-Id` (the stream's duplicate window would drop the original id). The event keeps
its CloudEvents id, so every consumer that already processed it skips it (its processed-
events record) and only the one that gave up processes it now. Each replay moves the row
from `dead_letters` to `dead_letter_replays` with who and when, in one transaction with
the publication's acknowledgement; a replay that fails again comes back as a new dead
letter.
"""

from __future__ import annotations

import datetime as dt
import json

import nats
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db import service_metadata
from shared.events import STREAM_NAME
from shared.settings import SERVICES, nats_servers

LIST_COLUMNS = ("service", "id", "consumer", "estate", "event_id", "stream_seq", "attempts", "recorded_at", "reason")


def _tables(service: str) -> tuple[sa.Table, sa.Table]:
    metadata = service_metadata(service)
    return metadata.tables[f"{service}.dead_letters"], metadata.tables[f"{service}.dead_letter_replays"]


def describe_body(body: bytes) -> object:
    """The body as JSON when it is JSON, else as text (undecodable bytes escaped)."""
    text = body.decode("utf-8", errors="backslashreplace")
    try:
        return json.loads(text)
    except ValueError:
        return text


async def list_dead_letters(engine: AsyncEngine, services: tuple[str, ...] = SERVICES,
                            estate: str | None = None) -> list[dict]:
    """Dead letters of `services` (oldest first), without bodies: dicts of LIST_COLUMNS."""
    found = []
    async with engine.connect() as conn:
        for service in services:
            d, _ = _tables(service)
            query = sa.select(*(d.c[name] for name in LIST_COLUMNS if name != "service")).order_by(d.c.id)
            if estate:
                query = query.where(d.c.estate == estate)
            for row in (await conn.execute(query)).mappings():
                found.append({"service": service, **row})
    return found


async def show_dead_letter(engine: AsyncEngine, service: str, dead_letter_id: int) -> dict | None:
    """One dead letter with its subject and body (see `describe_body`); None when absent."""
    d, _ = _tables(service)
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(d).where(d.c.id == dead_letter_id))).mappings().first()
    if row is None:
        return None
    return {"service": service, **{k: v for k, v in row.items() if k != "body"}, "body": describe_body(row["body"])}


async def replay_dead_letters(engine: AsyncEngine, nats_url: str, service: str, *, ids: list[int] | None,
                              replayed_by: str, now: dt.datetime | None = None,
                              estate: str | None = None) -> list[dict]:
    """Replay the service's dead letters `ids` (None: all of them, or all of `estate`'s,
    oldest first). Returns
    one dict per replay: id, event_id, message_id, stream_seq. Raises LookupError for an
    id that is not (or no longer) a dead letter, before anything is replayed."""
    d, replays = _tables(service)
    now = now or dt.datetime.now(dt.timezone.utc)
    nc = await nats.connect(nats_servers(nats_url))
    done = []
    try:
        js = nc.jetstream()
        async with engine.begin() as conn:
            query = sa.select(d).order_by(d.c.id).with_for_update(skip_locked=True)
            if ids is not None:
                query = query.where(d.c.id.in_(ids))
            if estate is not None:
                query = query.where(d.c.estate == estate)
            rows = (await conn.execute(query)).mappings().all()
            missing = set(ids or ()) - {row["id"] for row in rows}
            if missing:
                raise LookupError(f"no dead letter {sorted(missing)} in {service} (already replayed?)")
            for row in rows:
                message_id = f"{row['event_id'] or 'dead-letter'}:replay:{service}:{row['id']}"
                ack = await js.publish(row["subject"], row["body"], stream=STREAM_NAME,
                                       headers={"Nats-Msg-Id": message_id})
                await conn.execute(sa.insert(replays).values(
                    dead_letter_id=row["id"], consumer=row["consumer"], subject=row["subject"],
                    event_id=row["event_id"], estate=row["estate"], attempts=row["attempts"], reason=row["reason"],
                    recorded_at=row["recorded_at"], replayed_at=now, replayed_by=replayed_by,
                    message_id=message_id, stream_seq=ack.seq,
                ))
                await conn.execute(sa.delete(d).where(d.c.id == row["id"]))
                done.append({"id": row["id"], "event_id": row["event_id"], "message_id": message_id,
                             "stream_seq": ack.seq})
    finally:
        await nc.close()
    return done
