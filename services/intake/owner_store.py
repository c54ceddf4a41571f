"""Intake's tables of the owners' self-service (issue 15): one-time binding codes and the
binding lock per unit, bindings and their log, messages sent through the notifier,
uploaded photos, online submissions and the owner-facing progress of each (a projection
of the ticket events intake consumes). Part of intake's metadata (imported by store)."""

import sqlalchemy as sa

from shared import limits
from sqlalchemy.dialects.postgresql import insert as pg_insert

from services.intake.store import disclosures, metadata, owners, units

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
