"""Intake's tables of the owners' self-service (issue 15): one-time binding codes and the
binding lock per unit, bindings and their log, messages sent through the notifier,
uploaded photos, online submissions and the owner-facing progress of each (a projection
of the ticket events intake consumes). Part of intake's metadata (imported by store)."""

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, insert as pg_insert

from services.intake.store import disclosures, metadata, owners, tickets, units
from shared import limits

DEVICE_MAX = 80  # shared.owner_auth.device_of: a 64-character id or "ip:" + an address

# One-time codes proving the tie to a unit; only the hash is kept.
bind_codes = sa.Table(
    "owner_bind_codes",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False),
    sa.Column("unit", sa.String(limits.UNIT_CODE_MAX), nullable=False),
    sa.Column("code_hash", sa.String(64), nullable=False),
    sa.Column("device", sa.String(DEVICE_MAX), nullable=False),
    sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("used_at", sa.DateTime(timezone=True)),
    sa.Index("ix_owner_bind_codes_unit", "estate", "unit", "issued_at"),
)

# Wrong codes in a row per unit, and the lock they led to (policy.owners).
bind_locks = sa.Table(
    "owner_bind_locks",
    metadata,
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), primary_key=True),
    sa.Column("unit", sa.String(limits.UNIT_CODE_MAX), primary_key=True),
    sa.Column("wrong_codes", sa.Integer, nullable=False, server_default="0"),
    sa.Column("locked_until", sa.DateTime(timezone=True)),
)

bindings = sa.Table(
    "owner_bindings",
    metadata,
    sa.Column("id", sa.String(limits.ID_MAX), primary_key=True),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False),
    sa.Column("unit", sa.String(limits.UNIT_CODE_MAX), nullable=False),
    sa.Column("device", sa.String(DEVICE_MAX), nullable=False),
    sa.Column("bound_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("unbound_at", sa.DateTime(timezone=True)),
    sa.Column("unbound_by", sa.String(limits.ID_MAX)),
    sa.Index("ix_owner_bindings_unit", "estate", "unit"),
)

# Every binding-related act (bound, unbound, code sent, wrong code, locked), kept.
binding_log = sa.Table(
    "owner_binding_log",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False),
    sa.Column("unit", sa.String(limits.UNIT_CODE_MAX), nullable=False),
    sa.Column("action", sa.String(limits.CODE_MAX), nullable=False),
    sa.Column("binding_id", sa.String(limits.ID_MAX)),
    sa.Column("actor", sa.String(limits.ID_MAX), nullable=False),
    sa.Column("device", sa.String(DEVICE_MAX)),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_owner_binding_log_estate", "estate", "at"),
)

# What the notifier sent (the embedded notifier's only delivery is this record, shown on
# the desk's "sent messages" page); a provider marks `delivered_at` when it took it.
messages = sa.Table(
    "owner_messages",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False),
    sa.Column("unit", sa.String(limits.UNIT_CODE_MAX), nullable=False),
    sa.Column("recipient", sa.String(limits.SHORT_TEXT_MAX), nullable=False),  # masked phone / binding / desk
    sa.Column("purpose", sa.String(limits.CODE_MAX), nullable=False),  # bind_code / progress
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("ticket_id", sa.String(limits.ID_MAX)),
    sa.Column("binding_id", sa.String(limits.ID_MAX)),
    sa.Column("phone", sa.String(limits.PHONE_MAX)),  # for a provider; never shown unmasked
    sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("delivered_at", sa.DateTime(timezone=True)),
    sa.Index("ix_owner_messages_estate", "estate", "sent_at"),
)

photos = sa.Table(
    "owner_photos",
    metadata,
    sa.Column("id", sa.String(limits.ID_MAX), primary_key=True),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False),
    sa.Column("unit", sa.String(limits.UNIT_CODE_MAX), nullable=False),
    sa.Column("binding_id", sa.String(limits.ID_MAX), nullable=False),
    sa.Column("content_type", sa.String(limits.CODE_MAX), nullable=False),
    sa.Column("size", sa.Integer, nullable=False),
    sa.Column("storage_key", sa.String(limits.SHORT_TEXT_MAX), nullable=False),
    sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("submission_id", sa.String(limits.ID_MAX)),
)

# An owner's online request: waits for the desk clerk who first opens it (首问), then is a
# normal request (`ticket_id`). `stage` is the owner-facing progress, kept from events.
submissions = sa.Table(
    "owner_submissions",
    metadata,
    sa.Column("id", sa.String(limits.ID_MAX), primary_key=True),
    sa.Column("estate", sa.String(limits.ESTATE_CODE_MAX), nullable=False),
    sa.Column("unit", sa.String(limits.UNIT_CODE_MAX), nullable=False),
    sa.Column("binding_id", sa.String(limits.ID_MAX), nullable=False),
    sa.Column("device", sa.String(DEVICE_MAX), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("category", sa.String(limits.CATEGORY_MAX), nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("photos", sa.JSON, nullable=False, server_default=sa.text("'[]'")),
    sa.Column("reply_method", sa.String(16), nullable=False),
    sa.Column("reply_agreed_by", sa.DateTime(timezone=True)),
    sa.Column("anonymous", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("ticket_id", sa.String(limits.ID_MAX), unique=True),
    sa.Column("opened_by", sa.String(limits.ID_MAX)),
    sa.Column("opened_at", sa.DateTime(timezone=True)),
    sa.Column("stage", sa.String(limits.CODE_MAX), nullable=False),
    sa.Column("round", sa.Integer, nullable=False, server_default="1"),
    sa.Column("stage_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_owner_submissions_unit", "estate", "unit", "submitted_at"),
)

# The owner-facing history of one submission: each stage reached, with its promised time.
stages = sa.Table(
    "owner_stages",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("submission_id", sa.String(limits.ID_MAX), nullable=False, index=True),
    sa.Column("event_id", sa.String(64), nullable=False, unique=True),
    sa.Column("stage", sa.String(limits.CODE_MAX), nullable=False),
    sa.Column("round", sa.Integer, nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("promised_at", sa.DateTime(timezone=True)),
    sa.Column("note", sa.Text),
)


# --- repositories of the owners' directory (units, owners, disclosures) ---------------------------
# The tables are store.units, store.owners and store.disclosures (intake's first migration).


class OwnerDirectory:
    """Units, owners and the log of unmasked views, for the desk's owner routes."""

    def __init__(self, session):
        self.session = session

    async def add_unit(self, estate: str, code: str, parts: dict, now) -> bool:
        """False when the estate has that unit already."""
        return (await self.session.execute(
            pg_insert(units).values(estate=estate, code=code, created_at=now, **parts)
            .on_conflict_do_nothing().returning(units.c.code))).first() is not None

    async def units(self, estate: str, building: str | None = None) -> list:
        query = sa.select(units).where(units.c.estate == estate).order_by(units.c.code)
        if building:
            query = query.where(units.c.building == building)
        return (await self.session.execute(query)).all()

    async def has_unit(self, estate: str, code: str) -> bool:
        return (await self.session.execute(sa.select(units.c.code).where(
            units.c.estate == estate, units.c.code == code))).first() is not None

    async def add_owner(self, values: dict):
        """Insert an owner; returns the stored row."""
        await self.session.execute(sa.insert(owners).values(**values))
        return (await self.session.execute(sa.select(owners).where(owners.c.id == values["id"]))).first()

    async def owner(self, estate: str, owner_id: str):
        return (await self.session.execute(sa.select(owners).where(
            owners.c.estate == estate, owners.c.id == owner_id))).first()

    async def owners(self, estate: str, unit: str | None = None, limit: int = 1000) -> list:
        query = sa.select(owners).where(owners.c.estate == estate).order_by(owners.c.unit, owners.c.name).limit(limit)
        if unit:
            query = query.where(owners.c.unit == unit)
        return (await self.session.execute(query)).all()

    async def log_disclosures(self, entries: list[dict]) -> None:
        if entries:
            await self.session.execute(sa.insert(disclosures), entries)

    async def disclosures(self, estate: str, owner_id: str | None = None, limit: int = 1000) -> list:
        query = (sa.select(disclosures).where(disclosures.c.estate == estate)
                 .order_by(disclosures.c.id.desc()).limit(limit))
        if owner_id:
            query = query.where(disclosures.c.owner_id == owner_id)
        return (await self.session.execute(query)).all()


# What the owners' projection needs of a ticket (SelfService.ticket_of).
_TICKET_OF = sa.select(tickets.c.id, tickets.c.form_number, tickets.c.client_request_id, tickets.c.first_contact,
                       tickets.c.first_contact_name)


# --- repository of the owners' self-service ---------------------------------------------------------


class SelfService:
    """Binding codes and locks, bindings and their log, messages, photos, online submissions
    and their owner-facing stages: every query of owners.py and owner_api.py."""

    def __init__(self, session):
        self.session = session
        # Tickets read ahead for a consumer batch (`load_tickets`): id -> row, or None for
        # an id with no ticket. Safe to keep for the batch: the columns read never change.
        self._tickets: dict[str, object] = {}

    # --- counts for the rate limits (policy.owners) ---------------------------------------------------
    async def _count(self, table, *where) -> int:
        return (await self.session.execute(sa.select(sa.func.count()).select_from(table).where(*where))).scalar_one()

    async def codes_for_unit(self, estate: str, unit: str, since) -> int:
        C = bind_codes
        return await self._count(C, C.c.estate == estate, C.c.unit == unit, C.c.issued_at > since)

    async def codes_from_device(self, device: str, since) -> int:
        return await self._count(bind_codes, bind_codes.c.device == device, bind_codes.c.issued_at > since)

    async def submissions_for_unit(self, estate: str, unit: str, since) -> int:
        S = submissions
        return await self._count(S, S.c.estate == estate, S.c.unit == unit, S.c.submitted_at > since)

    async def submissions_from_device(self, device: str, since) -> int:
        return await self._count(submissions, submissions.c.device == device, submissions.c.submitted_at > since)

    async def loose_photos(self, binding_id: str, since) -> int:
        """Photos of this binding not attached to a request, uploaded since `since`."""
        P = photos
        return await self._count(P, P.c.binding_id == binding_id, P.c.submission_id.is_(None), P.c.uploaded_at > since)

    # --- codes, the binding lock, bindings ------------------------------------------------------------
    async def lock_row(self, estate: str, unit: str):
        """The unit's wrong-code counter and lock, created if need be, locked for this transaction."""
        await self.session.execute(pg_insert(bind_locks).values(estate=estate, unit=unit).on_conflict_do_nothing())
        return (await self.session.execute(sa.select(bind_locks).where(
            bind_locks.c.estate == estate, bind_locks.c.unit == unit).with_for_update())).one()

    async def count_wrong_code(self, estate: str, unit: str, wrong: int, locked_until) -> None:
        await self.session.execute(sa.update(bind_locks).where(bind_locks.c.estate == estate, bind_locks.c.unit == unit)
                                   .values(wrong_codes=wrong, locked_until=locked_until))

    async def reset_wrong_codes(self, estate: str, unit: str) -> None:
        await self.session.execute(sa.update(bind_locks).where(bind_locks.c.estate == estate, bind_locks.c.unit == unit)
                                   .values(wrong_codes=0))

    async def add_code(self, estate: str, unit: str, code_hash: str, device: str, issued_at, expires_at) -> None:
        await self.session.execute(sa.insert(bind_codes).values(estate=estate, unit=unit, code_hash=code_hash,
                                                                device=device, issued_at=issued_at,
                                                                expires_at=expires_at))

    async def live_codes(self, estate: str, unit: str, now) -> list:
        C = bind_codes
        return (await self.session.execute(sa.select(C).where(
            C.c.estate == estate, C.c.unit == unit, C.c.used_at.is_(None), C.c.expires_at > now))).all()

    async def use_code(self, code_id: int, now) -> None:
        await self.session.execute(sa.update(bind_codes).where(bind_codes.c.id == code_id).values(used_at=now))

    async def phone_on_file(self, estate: str, unit: str) -> str | None:
        """The unit's first phone on file (owners before residents, oldest first)."""
        return (await self.session.execute(sa.select(owners.c.phone).where(
            owners.c.estate == estate, owners.c.unit == unit, owners.c.phone.is_not(None))
            .order_by(owners.c.relation, owners.c.created_at).limit(1))).scalar()

    async def add_binding(self, values: dict) -> None:
        await self.session.execute(sa.insert(bindings).values(**values))

    async def binding(self, binding_id: str):
        return (await self.session.execute(sa.select(bindings).where(bindings.c.id == binding_id))).first()

    async def extend_binding(self, binding_id: str, expires_at) -> None:
        await self.session.execute(sa.update(bindings).where(bindings.c.id == binding_id).values(expires_at=expires_at))

    async def unbind(self, estate: str, binding_id: str, actor: str, at, unit: str | None = None):
        """End a live binding; its (unit, expires_at), or None when there was none."""
        B = bindings
        return (await self.session.execute(sa.update(B).where(
            B.c.id == binding_id, B.c.estate == estate, B.c.unbound_at.is_(None), *([B.c.unit == unit] if unit else []))
            .values(unbound_at=at, unbound_by=actor).returning(B.c.unit, B.c.expires_at))).first()

    async def bindings(self, estate: str, unit: str | None, include_removed: bool, limit: int = 500) -> list:
        B = bindings
        query = sa.select(B).where(B.c.estate == estate)
        if unit:
            query = query.where(B.c.unit == unit)
        if not include_removed:
            query = query.where(B.c.unbound_at.is_(None))
        return (await self.session.execute(query.order_by(B.c.bound_at.desc()).limit(limit))).all()

    async def people_on_file(self, estate: str, units_: set[str]) -> list:
        O = owners
        return (await self.session.execute(sa.select(O.c.unit, O.c.name, O.c.phone).where(
            O.c.estate == estate, O.c.unit.in_(units_)).order_by(O.c.relation, O.c.created_at))).all()

    async def log(self, values: dict) -> None:
        await self.session.execute(sa.insert(binding_log).values(**values))

    async def log_entries(self, estate: str, unit: str | None, limit: int = 500) -> list:
        L = binding_log
        query = sa.select(L).where(L.c.estate == estate)
        if unit:
            query = query.where(L.c.unit == unit)
        return (await self.session.execute(query.order_by(L.c.at.desc(), L.c.id.desc()).limit(limit))).all()

    # --- messages ---------------------------------------------------------------------------------------
    async def add_message(self, values: dict) -> None:
        await self.session.execute(sa.insert(messages).values(**values))

    async def undelivered(self, limit: int = 100) -> list:
        M = messages
        return (await self.session.execute(sa.select(M).where(M.c.delivered_at.is_(None)).order_by(M.c.id)
                                           .limit(limit).with_for_update(skip_locked=True))).all()

    async def delivered(self, message_id: int, at) -> None:
        await self.session.execute(sa.update(messages).where(messages.c.id == message_id).values(delivered_at=at))

    async def messages(self, estate: str, unit: str | None, limit: int = 200) -> list:
        M = messages
        query = sa.select(M).where(M.c.estate == estate)
        if unit:
            query = query.where(M.c.unit == unit)
        return (await self.session.execute(query.order_by(M.c.id.desc()).limit(limit))).all()

    async def progress_messages(self, estate: str, unit: str, limit: int = 50) -> list:
        """The unit's progress messages with the submission each is about, newest first."""
        M, S = messages, submissions
        return (await self.session.execute(
            sa.select(M.c.text, M.c.sent_at, S.c.id.label("submission_id"))
            .join(S, S.c.ticket_id == M.c.ticket_id, isouter=True)
            .where(M.c.estate == estate, M.c.unit == unit, M.c.purpose == "progress")
            .order_by(M.c.id.desc()).limit(limit))).all()

    # --- photos -----------------------------------------------------------------------------------------
    async def add_photo(self, values: dict) -> None:
        await self.session.execute(sa.insert(photos).values(**values))

    async def photo(self, estate: str, photo_id: str, unit: str | None):
        P = photos
        return (await self.session.execute(sa.select(P).where(P.c.id == photo_id, P.c.estate == estate,
                                                              *([P.c.unit == unit] if unit else [])))).first()

    async def unattached_of(self, binding_id: str, ids: list[str]) -> set[str]:
        """Which of `ids` are this binding's photos not yet attached to a request."""
        P = photos
        return set((await self.session.execute(sa.select(P.c.id).where(
            P.c.id.in_(ids), P.c.binding_id == binding_id, P.c.submission_id.is_(None)))).scalars())

    async def attach_photos(self, ids: list[str], submission_id: str) -> None:
        await self.session.execute(sa.update(photos).where(photos.c.id.in_(ids)).values(submission_id=submission_id))

    # --- submissions and their stages -----------------------------------------------------------------------
    async def add_submission(self, values: dict):
        await self.session.execute(sa.insert(submissions).values(**values))
        return await self.submission(values["id"])

    async def submission(self, submission_id: str, estate: str | None = None, unit: str | None = None, *,
                         lock: bool = False):
        S = submissions
        query = sa.select(S).where(S.c.id == submission_id, *([S.c.estate == estate] if estate else []),
                                   *([S.c.unit == unit] if unit else []))
        return (await self.session.execute(query.with_for_update() if lock else query)).first()

    async def submissions_of_unit(self, estate: str, unit: str, limit: int = 100) -> list:
        S = submissions
        return (await self.session.execute(sa.select(S).where(S.c.estate == estate, S.c.unit == unit)
                                           .order_by(S.c.submitted_at.desc()).limit(limit))).all()

    async def online_requests(self, estate: str, status: str | None, limit: int = 200) -> list:
        """The estate's submissions: `waiting` for a clerk, `opened`, or all; newest first."""
        S = submissions
        query = sa.select(S).where(S.c.estate == estate)
        if status:
            query = query.where(S.c.ticket_id.is_(None) if status == "waiting" else S.c.ticket_id.is_not(None))
        return (await self.session.execute(query.order_by(S.c.submitted_at.desc()).limit(limit))).all()

    async def opened(self, submission_id: str, ticket_id: str, staff_id: str, at):
        await self.session.execute(sa.update(submissions).where(submissions.c.id == submission_id).values(
            ticket_id=ticket_id, opened_by=staff_id, opened_at=at))
        return await self.submission(submission_id)

    async def add_stage(self, submission, stage: str, round_: int, event_id: str, at, promised_at=None,
                        note=None) -> bool:
        """Record a stage the owner sees; False when this event was recorded before."""
        inserted = (await self.session.execute(pg_insert(stages).values(
            submission_id=submission.id, event_id=event_id, stage=stage, round=round_, at=at, promised_at=promised_at,
            note=note).on_conflict_do_nothing().returning(stages.c.id))).first()
        if inserted is None:
            return False
        await self.session.execute(sa.update(submissions).where(submissions.c.id == submission.id)
                                   .values(stage=stage, round=round_, stage_at=at))
        return True

    async def history(self, submission_id: str) -> list:
        return (await self.session.execute(sa.select(stages).where(stages.c.submission_id == submission_id)
                                           .order_by(stages.c.at, stages.c.id))).all()

    async def ticket_of(self, ticket_id: str):
        """The ticket an online request became (its number, key and first contact), or
        None; from memory when `load_tickets` read it ahead."""
        if ticket_id in self._tickets:
            return self._tickets[ticket_id]
        return (await self.session.execute(_TICKET_OF.where(tickets.c.id == ticket_id))).first()

    async def load_tickets(self, ticket_ids: list[str]) -> None:
        """Read these tickets in one statement (`= ANY`: one prepared statement whatever
        their number), so `ticket_of` answers for them without a query: a consumer
        batch's read-ahead."""
        rows = (await self.session.execute(_TICKET_OF.where(tickets.c.id == sa.any_(
            sa.bindparam("ids", ticket_ids, type_=ARRAY(tickets.c.id.type)))))).all()
        self._tickets.update(dict.fromkeys(ticket_ids))
        self._tickets.update({row.id: row for row in rows})
