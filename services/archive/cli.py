"""`estatedesk archive ...`: monthly organisation, quarterly archiving and chain
verification by command (the service also runs the first two on schedule).

The commands work on the archive's database and the directory directly, with the same
code as the service, so they also work while the service is down. Servers come from
--nats-url/--database-url, the environment, or the running installation's endpoints.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from shared.db import json_default


def _settings(args):
    from estatedesk.cli import _data_dir
    from shared.settings import Settings, database_url_for

    nats_url = args.nats_url or os.environ.get("ESTATEDESK_NATS_URL")
    database_url = args.database_url or database_url_for("archive")
    clock = os.environ.get("ESTATEDESK_CLOCK")
    if not (nats_url and database_url):
        # The running installation: its servers and the clock its services share.
        path = _data_dir(args) / "endpoints.json"
        if not path.exists():
            raise SystemExit(f"{path} not found: is `estatedesk up` running? Or pass --nats-url and --database-url.")
        endpoints = json.loads(path.read_text())
        nats_url, database_url = nats_url or endpoints["nats"], \
            database_url or endpoints.get("databases", {}).get("archive") or endpoints["database"]
        clock = clock or endpoints.get("clock")
    return Settings(nats_url=nats_url, database_url=database_url, data_dir=_data_dir(args), clock_spec=clock or "system")


async def _with_service(args, work):
    from services.archive.app import service

    service.bind(_settings(args))
    await service.directory.start(service.settings.nats_url)
    try:
        return await work(service)
    finally:
        await service.directory.stop()
        await service.db.dispose()


def _print(result: dict) -> None:
    print(json.dumps(result, default=json_default, ensure_ascii=False, indent=2))


def _run(args, work) -> int:
    from shared.errors import RuleViolation

    try:
        result = asyncio.run(_with_service(args, work))
    except RuleViolation as refusal:
        print(f"refused: {refusal}", file=sys.stderr)
        return 2
    except ValueError as error:
        print(f"invalid: {error}", file=sys.stderr)
        return 2
    _print(result)
    return 0 if result.get("ok", True) else 1


def cmd_monthly(args) -> int:
    from services.archive.app import data_dir, transaction
    from services.archive.organisation import organise_month

    return _run(args, lambda service: organise_month(transaction, service.context, data_dir(), args.estate,
                                                     args.month, "command"))


def cmd_quarterly(args) -> int:
    from services.archive.app import data_dir, transaction
    from services.archive.organisation import archive_quarter

    return _run(args, lambda service: archive_quarter(transaction, service.context, data_dir(), args.estate,
                                                      args.quarter, "command"))


def cmd_verify(args) -> int:
    from services.archive.app import transaction
    from services.archive.verify import verify_estate

    return _run(args, lambda service: verify_estate(transaction, args.estate, service.settings.nats_url,
                                                    f"estatedesk/{service.name}"))


def register(subparsers) -> None:
    archive = subparsers.add_parser("archive", help="archive: monthly organisation, quarterly volumes, verify")
    commands = archive.add_subparsers(dest="archive_command", required=True)

    def common(parser):
        parser.add_argument("--estate", required=True, help="estate code")
        parser.add_argument("--nats-url")
        parser.add_argument("--database-url")

    monthly = commands.add_parser("monthly", help="organise and back up a finished month (idempotent)")
    common(monthly)
    monthly.add_argument("--month", required=True, help="e.g. 2026-11")
    monthly.set_defaults(func=cmd_monthly)

    quarterly = commands.add_parser("quarterly", help="archive a finished quarter into volumes (idempotent)")
    common(quarterly)
    quarterly.add_argument("--quarter", required=True, help="e.g. 2026Q4")
    quarterly.set_defaults(func=cmd_quarterly)

    verify = commands.add_parser("verify", help="check an estate's hash chain; exit 1 naming the first broken record")
    common(verify)
    verify.set_defaults(func=cmd_verify)
