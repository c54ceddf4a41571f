"""Archived records, quarterly volumes with their general, volume and item catalogues, and the
monthly organised sets (002 §4.8.2; 001 第6篇 1.1.2)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Sequence

from pydantic import Field

from shared.periods import MONTH, months_of_quarter
from shared.events import Kind
from shared.policy import DEFAULT_POLICY, Policy
from services.archive.rules.common import UtcDatetime, _Frozen
from services.archive.rules.form import ArchivedForm, check_archivable
from services.archive.rules.periods import closed_month
from services.archive.rules.retention import KIND_LABELS, RETENTION_CLASS_LABELS, RetentionClass, retention_years


# --- archived records, volumes and catalogues ----------------------------------------------


class ArchivedRecord(_Frozen):
    """What the catalogues, the register and destruction need to know of a record."""

    estate: str
    sequence: int = Field(ge=1)
    record_number: str
    ticket_id: str
    form_number: str
    kind: Kind
    title: str
    closed_month: str
    retention_class: RetentionClass
    archived_at: UtcDatetime
    content_hash: str
    destroyed: bool = False


TITLE_EXCERPT_CHARS = 24  # a catalogue line, not the description


def record_title(form: ArchivedForm) -> str:
    """Item title for the catalogues: kind, place and the start of the description."""
    place = "".join(p for p in (form.intake.building, form.intake.unit) if p)
    text = " ".join(form.intake.description.split())
    excerpt = text if len(text) <= TITLE_EXCERPT_CHARS else text[:TITLE_EXCERPT_CHARS] + "…"
    head = KIND_LABELS[form.intake.kind] + (f"({place})" if place else "")
    return f"{head}:{excerpt}"


def archived_record(
    form: ArchivedForm,
    *,
    sequence: int,
    record_number: str,
    retention_class: RetentionClass,
    archived_at: dt.datetime,
    content_hash: str,
) -> ArchivedRecord:
    """The catalogue facts of a freshly archived, closed form."""
    check_archivable(form)
    return ArchivedRecord(
        estate=form.estate,
        sequence=sequence,
        record_number=record_number,
        ticket_id=form.ticket_id,
        form_number=form.form_number,
        kind=form.intake.kind,
        title=record_title(form),
        closed_month=closed_month(form.closed_at, form.timezone),  # type: ignore[arg-type]
        retention_class=retention_class,
        archived_at=archived_at,
        content_hash=content_hash,
    )


class ItemCatalogueEntry(_Frozen):
    """卷内目录 line."""

    volume_number: str
    item_number: int
    record_number: str
    form_number: str
    ticket_id: str
    title: str
    closed_month: str
    destroyed: bool


class VolumeCatalogueEntry(_Frozen):
    """案卷目录 line."""

    volume_number: str
    title: str
    retention_class: RetentionClass
    retention_years: int
    custodian: str
    item_count: int
    first_record: str
    last_record: str
    months: tuple[str, ...]


class GeneralCatalogueEntry(_Frozen):
    """总目录 line: one per retention class present in the quarter."""

    retention_class: RetentionClass
    retention_years: int
    custodian: str
    volume_numbers: tuple[str, ...]
    item_count: int


class Volume(_Frozen):
    catalogue: VolumeCatalogueEntry
    items: tuple[ItemCatalogueEntry, ...]


class VolumePlan(_Frozen):
    estate: str
    quarter: str
    general_catalogue: tuple[GeneralCatalogueEntry, ...]
    volume_catalogue: tuple[VolumeCatalogueEntry, ...]
    volumes: tuple[Volume, ...]


# Who keeps each class: company-handled opinions go to the general management dept
# (002 §4.8.4); the estate keeps the rest, important events in their own file.
CUSTODIANS = {
    RetentionClass.ordinary: "estate_customer_service",
    RetentionClass.important_event: "estate_customer_service",
    RetentionClass.company_handled: "company_general_management",
}
_CHINESE_QUARTER = {1: "一", 2: "二", 3: "三", 4: "四"}


def volume_number(estate: str, quarter: str, index: int) -> str:
    return f"{estate.upper()}-{quarter}-V{index:02d}"


def assign_volumes(records: Sequence[ArchivedRecord], *, quarter: str, policy: Policy = DEFAULT_POLICY) -> VolumePlan:
    """Bind a quarter's records into volumes, one retention class per volume, at most
    `volume_max_items` forms each, with the general, volume and item catalogues.

    Input order does not matter: classes go in RetentionClass order, records by
    (closed month, record number), so the same records always give the same plan.
    Destroyed records keep their place (marked) so destruction never renumbers."""
    months = set(months_of_quarter(quarter))
    estates = {r.estate for r in records}
    if len(estates) > 1:
        raise ValueError(f"records of several estates {sorted(estates)} in one volume plan")
    if len({r.record_number for r in records}) != len(records):
        raise ValueError("a record appears twice in the volume plan")
    outside = sorted(r.record_number for r in records if r.closed_month not in months)
    if outside:
        raise ValueError(f"records {outside} did not close in {quarter}")
    if not records:
        return VolumePlan(estate="", quarter=quarter, general_catalogue=(), volume_catalogue=(), volumes=())
    estate = estates.pop()
    limit = policy.archive.volume_max_items
    if limit < 1:
        raise ValueError("volume_max_items must be at least 1")
    year, q = quarter.split("Q")

    volumes: list[Volume] = []
    general: list[GeneralCatalogueEntry] = []
    for cls in RetentionClass:
        members = sorted((r for r in records if r.retention_class == cls), key=lambda r: (r.closed_month, r.record_number))
        if not members:
            continue
        years = retention_years(cls, policy)
        chunks = [members[i:i + limit] for i in range(0, len(members), limit)]
        numbers: list[str] = []
        for part, chunk in enumerate(chunks, start=1):
            number = volume_number(estate, quarter, len(volumes) + 1)
            numbers.append(number)
            title = (
                f"{estate.upper()} {year}年第{_CHINESE_QUARTER[int(q)]}季度 业主(住户)服务登记会签单"
                f"({RETENTION_CLASS_LABELS[cls]},保管期限{years}年)第{part}卷/共{len(chunks)}卷"
            )
            items = tuple(
                ItemCatalogueEntry(
                    volume_number=number, item_number=i, record_number=r.record_number, form_number=r.form_number,
                    ticket_id=r.ticket_id, title=r.title, closed_month=r.closed_month, destroyed=r.destroyed,
                )
                for i, r in enumerate(chunk, start=1)
            )
            catalogue = VolumeCatalogueEntry(
                volume_number=number, title=title, retention_class=cls, retention_years=years,
                custodian=CUSTODIANS[cls], item_count=len(items), first_record=chunk[0].record_number,
                last_record=chunk[-1].record_number, months=tuple(sorted({r.closed_month for r in chunk})),
            )
            volumes.append(Volume(catalogue=catalogue, items=items))
        general.append(
            GeneralCatalogueEntry(
                retention_class=cls, retention_years=years, custodian=CUSTODIANS[cls],
                volume_numbers=tuple(numbers), item_count=len(members),
            )
        )
    return VolumePlan(
        estate=estate,
        quarter=quarter,
        general_catalogue=tuple(general),
        volume_catalogue=tuple(v.catalogue for v in volumes),
        volumes=tuple(volumes),
    )


# --- monthly organisation 月度整理 ----------------------------------------------------------


class ManifestLine(_Frozen):
    record_number: str
    sequence: int
    ticket_id: str
    form_number: str
    title: str
    retention_class: RetentionClass
    archived_at: UtcDatetime
    content_hash: str
    record_hash: str


class MonthManifest(_Frozen):
    """One month's organised set: what was archived, with the hashes to check a backup by."""

    estate: str
    month: str
    part: int = Field(ge=1)  # 1, then supplements for forms archived after the month was organised
    organised_at: UtcDatetime
    records: tuple[ManifestLine, ...]

    def digest(self) -> str:
        return hashlib.sha256(
            json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        ).hexdigest()


def month_manifest(
    estate: str, month: str, part: int, organised_at: dt.datetime, lines: Iterable[ManifestLine]
) -> MonthManifest:
    if not MONTH.match(month):
        raise ValueError(f"{month!r} is not a month like 2026-11")
    return MonthManifest(
        estate=estate, month=month, part=part, organised_at=organised_at,
        records=tuple(sorted(lines, key=lambda line: line.sequence)),
    )


def supplementary_plan(plan: VolumePlan, *, first_index: int, part: int) -> VolumePlan:
    """A quarter archived again after forms arrived late: the new volumes continue the
    quarter's numbering (V04, V05, ...) and are titled as a supplement, so the volumes
    already bound are never renumbered."""
    if first_index < 1 or part < 1:
        raise ValueError("volume index and part start at 1")
    if first_index == 1 and part == 1:
        return plan
    renamed: dict[str, str] = {}
    volumes = []
    for offset, volume in enumerate(plan.volumes):
        number = volume_number(plan.estate, plan.quarter, first_index + offset)
        renamed[volume.catalogue.volume_number] = number
        catalogue = volume.catalogue.model_copy(
            update={"volume_number": number, "title": f"{volume.catalogue.title}(补充归档第{part}批)"}
        )
        items = tuple(item.model_copy(update={"volume_number": number}) for item in volume.items)
        volumes.append(Volume(catalogue=catalogue, items=items))
    general = tuple(
        entry.model_copy(update={"volume_numbers": tuple(renamed[n] for n in entry.volume_numbers)})
        for entry in plan.general_catalogue
    )
    return plan.model_copy(
        update={"volumes": tuple(volumes), "volume_catalogue": tuple(v.catalogue for v in volumes),
                "general_catalogue": general}
    )


