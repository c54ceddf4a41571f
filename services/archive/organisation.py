"""Monthly organisation 月度整理 and quarterly archiving 季度归档 (RULES §5; 002 §4.8.1–4.8.2):
a finished month's records become its organised set (part 1, or a supplement for forms
archived late), a finished quarter's records are bound into volumes with the general,
volume and item catalogues. Running either again changes nothing.

`organise_month` / `archive_quarter` take their unit-of-work factory, context and data
directory as arguments (jobs.py, api.py and the CLI pass them). Errors: RuleViolation 409
for a period not over yet; ValueError for a malformed month or quarter.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

from services.archive import rules
from services.archive.uow import ArchiveUnitOfWork
from shared.uow import HandlerContext

log = logging.getLogger("estatedesk.archive")

# Opens one transaction and gives its unit of work.
Transaction = Callable[[], AbstractAsyncContextManager[ArchiveUnitOfWork]]


def export_month(data_dir: str | None, manifest: rules.MonthManifest, digest: str,
                 contents: dict[str, bytes | None]) -> str | None:
    """The month's backup under the data directory: manifest plus every record's content."""
    if data_dir is None:
        return None
    folder = Path(data_dir) / "archive" / manifest.estate
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{manifest.month}-part{manifest.part:02d}.json"
    document = {
        "manifest": manifest.model_dump(mode="json"),
        "manifest_hash": digest,
        # Content as stored (canonical JSON text), so its sha256 checks against the manifest.
        "contents": {n: None if c is None else c.decode("utf-8") for n, c in contents.items()},
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(document, ensure_ascii=False, sort_keys=True, indent=1))
    tmp.chmod(0o600)  # owner files are level-1 confidential
    os.replace(tmp, path)
    return str(path)


def set_out(row) -> dict:
    return dict(estate=row.estate, month=row.month, part=row.part, organised_at=row.organised_at,
                organised_by=row.organised_by, record_count=row.record_count, manifest_hash=row.manifest_hash,
                export_path=row.export_path, records=row.manifest["records"])


async def organise_month(transaction: Transaction, ctx: HandlerContext, data_dir: str | None, estate: str,
                         month: str, by: str) -> dict:
    """Organise a finished month (RULES §5 monthly): the records closed in it that no set
    holds yet become the month's set (part 1, or a supplement)."""
    now = ctx.now()
    rules.quarter_of(month)  # validates the month's shape
    rules.check_period_over(month, now, ctx.timezone(estate))
    async with transaction() as uow:
        await uow.organisation.lock_estate(estate)
        existing = await uow.organisation.month_sets(estate, month)
        records = await uow.organisation.unorganised(estate, month)
        if existing and not records:
            return dict(estate=estate, month=month, changed=False, sets=[set_out(s) for s in existing])
        part = len(existing) + 1
        manifest = rules.month_manifest(estate, month, part, now, [
            rules.ManifestLine(
                record_number=r.record_number, sequence=r.sequence, ticket_id=r.ticket_id, form_number=r.form_number,
                title=r.title, retention_class=r.retention_class, archived_at=r.archived_at,
                content_hash=r.content_hash, record_hash=r.record_hash)
            for r in records
        ])
        digest = manifest.digest()
        path = await asyncio.to_thread(export_month, data_dir, manifest, digest,
                                       {r.record_number: r.content for r in records})
        await uow.organisation.add_month_set(
            estate=estate, month=month, part=part, organised_at=now, organised_by=by, record_count=len(records),
            manifest=manifest.model_dump(mode="json"), manifest_hash=digest, export_path=path)
        if records:
            await uow.organisation.set_month_part(estate, [r.record_number for r in records], part)
        sets = await uow.organisation.month_sets(estate, month)
    log.info("organised %s part %d: %d records", month, part, len(records), extra={"estate": estate})
    return dict(estate=estate, month=month, changed=True, sets=[set_out(s) for s in sets])


async def quarter_out(uow: ArchiveUnitOfWork, estate: str, quarter: str, changed: bool) -> dict:
    runs, vols, destroyed = await uow.organisation.quarter(estate, quarter)
    return dict(
        estate=estate, quarter=quarter, changed=changed,
        runs=[dict(part=run.part, archived_at=run.archived_at, archived_by=run.archived_by,
                   item_count=run.item_count, general_catalogue=run.general_catalogue) for run in runs],
        volumes=[dict(volume_number=vol.volume_number, part=vol.part, title=vol.title,
                      retention_class=vol.retention_class, retention_years=vol.retention_years,
                      custodian=vol.custodian, item_count=vol.item_count, first_record=vol.first_record,
                      last_record=vol.last_record, months=vol.months,
                      items=[{**item, "destroyed": item["record_number"] in destroyed} for item in vol.items])
                 for vol in vols],
    )


async def archive_quarter(transaction: Transaction, ctx: HandlerContext, data_dir: str | None, estate: str,
                          quarter: str, by: str) -> dict:
    """Archive a finished quarter (RULES §5 quarterly): organise its months, then bind the
    records no volume holds yet into volumes; forms archived late go into supplementary
    volumes numbered after the existing ones."""
    now = ctx.now()
    policy = ctx.policy(estate)
    months = rules.months_of_quarter(quarter)  # validates the quarter's shape
    rules.check_period_over(quarter, now, ctx.timezone(estate))
    changed = False
    for month in months:
        changed |= (await organise_month(transaction, ctx, data_dir, estate, month, by))["changed"]
    async with transaction() as uow:
        await uow.organisation.lock_estate(estate)
        runs = await uow.organisation.quarter_parts(estate, quarter)
        records = await uow.organisation.unbound(estate, list(months))
        if runs and not records:
            return await quarter_out(uow, estate, quarter, changed)
        part = len(runs) + 1
        bound = await uow.organisation.volumes_bound(estate, quarter)
        plan = rules.supplementary_plan(
            rules.assign_volumes([r.catalogue() for r in records], quarter=quarter, policy=policy),
            first_index=bound + 1, part=part)
        await uow.organisation.add_run(
            estate=estate, quarter=quarter, part=part, archived_at=now, archived_by=by, item_count=len(records),
            general_catalogue=[g.model_dump(mode="json") for g in plan.general_catalogue])
        for volume in plan.volumes:
            cat = volume.catalogue
            await uow.organisation.add_volume(
                volume_number=cat.volume_number, estate=estate, quarter=quarter, part=part, title=cat.title,
                retention_class=cat.retention_class.value, retention_years=cat.retention_years,
                custodian=cat.custodian, item_count=cat.item_count, first_record=cat.first_record,
                last_record=cat.last_record, months=list(cat.months),
                items=[i.model_dump(mode="json", exclude={"destroyed"}) for i in volume.items])
            for item in volume.items:
                await uow.organisation.bind(item.record_number, item.volume_number, item.item_number)
        log.info("archived %s part %d: %d records in %d volumes", quarter, part, len(records), len(plan.volumes),
                 extra={"estate": estate})
        return await quarter_out(uow, estate, quarter, True)


async def scheduled_work(transaction: Transaction) -> list[tuple[str, str, str]]:
    """("month" | "quarter", estate, period) still to organise or to bind, in order."""
    async with transaction() as uow:
        unorganised, unbound = await uow.organisation.still_to_do()
    work = [("month", estate, month) for estate, month in sorted(unorganised)]
    work += [("quarter", estate, quarter)
             for estate, quarter in sorted({(estate, rules.quarter_of(month)) for estate, month in unbound})]
    return work


def is_due(period: str, now: dt.datetime, ctx: HandlerContext, estate: str) -> bool:
    policy = ctx.policy(estate)
    return rules.scheduled_run_due(period, now, policy.timezone, policy)

