"""`estatedesk analytics ...` commands."""

from __future__ import annotations

import json
import os
from pathlib import Path

from shared.settings import database_url_for


def _urls(args) -> None:
    """URLs from the flags, else the environment, else the running stack's endpoints.json."""
    args.nats_url = args.nats_url or os.environ.get("ESTATEDESK_NATS_URL")
    args.database_url = args.database_url or database_url_for("analytics")
    if args.nats_url and args.database_url:
        return
    data_dir = Path(args.data_dir or os.environ.get("ESTATEDESK_DATA_DIR") or ".estatedesk").resolve()
    path = data_dir / "endpoints.json"
    if not path.exists():
        raise SystemExit(f"{path} not found: is `estatedesk up` running? Or pass --nats-url and --database-url.")
    endpoints = json.loads(path.read_text())
    args.nats_url = args.nats_url or endpoints["nats"]
    args.database_url = args.database_url or endpoints.get("databases", {}).get("analytics") or endpoints["database"]


def cmd_rebuild(args) -> int:
    from services.analytics import rebuild

    _urls(args)
    return rebuild.run(args)


def register(subparsers) -> None:
    analytics = subparsers.add_parser("analytics", help="analytics read model and reports")
    commands = analytics.add_subparsers(dest="analytics_command", required=True)
    rb = commands.add_parser(
        "rebuild",
        help="replay the ticket stream into a fresh read model and compare it with (or swap it into) the live one",
        description="Replays the JetStream history from its first event through the same rules into a scratch "
                    "schema, then compares every counter with the live read model (exit status 1 when they "
                    "differ) or, with --swap, replaces the live model with it.",
    )
    rb.add_argument("--into-schema", help="scratch schema to build into (kept afterwards); default: "
                                          "analytics_rebuild, dropped afterwards unless --keep")
    rb.add_argument("--swap", action="store_true", help="replace the live read model with the rebuilt one")
    rb.add_argument("--keep", action="store_true", help="keep the scratch schema")
    rb.add_argument("--nats-url")
    rb.add_argument("--database-url")
    rb.set_defaults(func=cmd_rebuild)
