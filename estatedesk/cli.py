"""The `estatedesk` command."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import signal
import sys
import time
from pathlib import Path

from shared.settings import SERVICES


def _data_dir(args) -> Path:
    return Path(args.data_dir or os.environ.get("ESTATEDESK_DATA_DIR") or ".estatedesk").resolve()


def cmd_up(args) -> int:
    from estatedesk.stack import Stack

    clock_spec = os.environ.get("ESTATEDESK_CLOCK", "system")
    if args.demo:
        from estatedesk.demo import demo_clock_spec

        clock_spec = demo_clock_spec(args.speed)
    stack = Stack(
        data_dir=_data_dir(args),
        nats_url=args.nats_url or os.environ.get("ESTATEDESK_NATS_URL"),
        database_url=args.database_url or os.environ.get("ESTATEDESK_DATABASE_URL"),
        clock_spec=clock_spec,
        nats_cluster=args.nats_cluster,
        nats_replicas=args.nats_replicas,
        replicas=max(1, args.replicas),
        postgres_servers=max(1, args.postgres_servers),
    )
    stopping = False

    def on_signal(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        stack.start()
        print("EstateDesk is up.")
        print(f"  console    {stack.console_url}   (the staff console and every API under /v1)")
        print(f"  NATS       {stack.nats_url}")
        print(f"  PostgreSQL {stack.database_url}")
        for name, url in stack.endpoints["databases"].items():
            if url != stack.database_url:
                print(f"    {name:<8} {url}")
        for service in stack.supervisor.services:
            if service.name != "gateway":
                print(f"  {service.label:<10} {service.url}   (API docs: {service.url}/docs)")
        print(f"  dashboard  {stack.console_url.rstrip('/')}/dashboard   (signed in like the console)")
        print(f"  API docs   {stack.console_url.rstrip('/')}/docs   (Swagger UI and ReDoc of every service, no CDN)")
        print(f"  endpoints  {stack.data_dir / 'endpoints.json'}")
        print("  token      estatedesk token --staff qm01 --role quality_manager --estate '*'")
        print("Ctrl-C stops everything.", flush=True)
        feeder = None
        if args.demo:
            import logging

            from estatedesk.demo import DemoFeeder

            handler = logging.FileHandler(stack.data_dir / "logs" / "demo.log")
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            logging.getLogger("estatedesk.demo").addHandler(handler)
            logging.getLogger("estatedesk.demo").setLevel(logging.INFO)
            print(f"  demo log   {stack.data_dir / 'logs' / 'demo.log'}", flush=True)
            from estatedesk.demo import DEMO_PASSWORD, demo_accounts

            feeder = DemoFeeder(stack, seed=args.seed)
            feeder.start()
            print(f"  demo accounts (password {DEMO_PASSWORD}) at {stack.console_url}:")
            for staff_id, what in demo_accounts():
                print(f"    {staff_id:<24} {what}")
        while not stopping:
            stack.supervisor.check_once()
            if feeder:
                feeder.check()
            time.sleep(0.5)
        if feeder:
            feeder.stop()
    finally:
        print("stopping…", flush=True)
        stack.stop()
        print("stopped.")
    return 0


def cmd_run(args) -> int:
    from estatedesk.runner import run_service

    if args.nats_url:
        os.environ["ESTATEDESK_NATS_URL"] = args.nats_url
    if args.database_url:  # the flag wins over ESTATEDESK_DATABASE_URL_<SERVICE> too
        from shared.settings import service_database_variable

        os.environ["ESTATEDESK_DATABASE_URL"] = os.environ[service_database_variable(args.service)] = args.database_url
    if args.port is not None:
        os.environ["ESTATEDESK_HTTP_PORT"] = str(args.port)
    if args.migrate:
        from shared.db import migrate
        from shared.settings import database_url_for

        url = database_url_for(args.service)
        if not url:
            raise SystemExit(f"set ESTATEDESK_DATABASE_URL (or ESTATEDESK_DATABASE_URL_{args.service.upper()}) "
                             "or --database-url")
        migrate(args.service, url)
    run_service(args.service)
    return 0


def cmd_migrate(args) -> int:
    from shared.db import migrate
    from shared.settings import database_url_for

    unknown = set(args.services) - set(SERVICES)
    if unknown:
        raise SystemExit(f"unknown services {sorted(unknown)}; one of {', '.join(SERVICES)}")
    names = args.services or SERVICES
    # Each service's own database when ESTATEDESK_DATABASE_URL_<SERVICE> is set.
    urls = {name: args.database_url or database_url_for(name) for name in names}
    missing = [name for name, url in urls.items() if not url]
    if missing:
        raise SystemExit("set ESTATEDESK_DATABASE_URL (or ESTATEDESK_DATABASE_URL_<SERVICE> for "
                         f"{', '.join(missing)}) or --database-url")
    for name in names:
        migrate(name, urls[name])
        print(f"{name}: migrated")
    return 0


def cmd_token(args) -> int:
    from shared.auth import issue_token
    from shared.settings import load_signing_key
    import datetime as dt

    data_dir = _data_dir(args)
    key = os.environ.get("ESTATEDESK_SIGNING_KEY")
    if not key:
        if not (data_dir / "signing.key").exists():
            # A new key here would sign tokens that no running service accepts.
            raise SystemExit(f"estatedesk token: no signing key in {data_dir} (not a data directory of a running "
                             "EstateDesk): run it where `estatedesk up` ran, pass --data-dir, or set "
                             "ESTATEDESK_SIGNING_KEY")
        key = load_signing_key(data_dir)
    try:
        token = issue_token(
            key, args.staff, args.role, args.estate, name=args.name, departments=args.department,
            ttl=dt.timedelta(days=args.days),
        )
    except ValueError as error:
        raise SystemExit(f"estatedesk token: {error}") from None
    print(token)
    return 0


def cmd_directory(args) -> int:
    from shared.directory import Company, Estate, publish_directory
    from shared.policy import effective_policy

    from pydantic import ValidationError

    try:
        data = json.loads(Path(args.file).read_text())
        company = Company.model_validate(data["company"]) if "company" in data else None
        estates = [Estate.model_validate(e) for e in data.get("estates", [])]
        for estate in estates:
            effective_policy(company.policy if company else {}, estate.policy)
    except (OSError, ValueError, ValidationError) as error:
        raise SystemExit(f"estatedesk directory: {args.file} refused: {error}") from None
    url = args.nats_url or os.environ.get("ESTATEDESK_NATS_URL") or _endpoints(args)["nats"]
    asyncio.run(publish_directory(url, company, estates))
    print(f"loaded {len(estates)} estates" + (" and the company" if company else ""))
    return 0


def _write_or_check(target: Path, text: str, check: bool, command: str) -> int:
    """A generated file committed to the repository: write it, or (--check) say whether it
    is current; exit 1 when stale."""
    if check:
        if not target.exists() or target.read_text() != text:
            print(f"{target} is stale: run `estatedesk {command}` and commit it", file=sys.stderr)
            return 1
        print(f"{target} is current")
        return 0
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    print(f"wrote {target}")
    return 0


def cmd_asyncapi(args) -> int:
    from shared.asyncapi import asyncapi_json

    return _write_or_check(Path(args.output), asyncapi_json(), args.check, "asyncapi")


def role_table() -> str:
    """The write routes of every service and the roles that may call them, as a Markdown
    table (the README carries it; a test keeps the two the same)."""
    lines = ["| service | route | roles that may call it |", "|---|---|---|"]
    for name in SERVICES:
        service = importlib.import_module(f"services.{name}.app").service
        for (method, path), roles in sorted(service.write_roles.items(), key=lambda item: (item[0][1], item[0][0])):
            lines.append(f"| {name} | `{method} /v1{path}` | {', '.join(roles)} |")
    return "\n".join(lines) + "\n"


def cmd_nginx(args) -> int:
    from estatedesk.gateway import nginx_config

    return _write_or_check(Path(args.output), nginx_config(), args.check, "nginx")


def cmd_roles(args) -> int:
    print(role_table(), end="")
    return 0


def cmd_revision(args) -> int:
    """Autogenerate a migration for a service against a scratch embedded PostgreSQL."""
    import tempfile

    from alembic import command

    from estatedesk.embedded import EmbeddedPostgres
    from shared.db import alembic_config

    with tempfile.TemporaryDirectory(prefix="estatedesk-rev-") as tmp:
        postgres = EmbeddedPostgres(Path(tmp)).start()
        try:
            cfg = alembic_config(args.service, postgres.url)
            command.upgrade(cfg, "head")
            command.revision(cfg, message=args.message, autogenerate=True)
        finally:
            postgres.stop()
    return 0


def cmd_dead_letters(args) -> int:
    from sqlalchemy.ext.asyncio import create_async_engine

    from estatedesk import deadletters
    from shared.settings import asyncpg_url

    services = tuple(args.service or SERVICES)
    db_urls = {service: service_database_url(args, service) for service in services}

    async def run() -> int:
        engines = {url: create_async_engine(asyncpg_url(url)) for url in set(db_urls.values())}
        engine = engines[db_urls[services[0]]]
        try:
            if args.action == "list":
                rows = []
                for service in services:  # each from its own database
                    rows += await deadletters.list_dead_letters(engines[db_urls[service]], (service,), args.estate)
                if args.json:
                    print(json.dumps(rows, default=str, ensure_ascii=False, indent=2))
                    return 0
                for row in rows:
                    print(f"{row['service']:<9} #{row['id']:<5} {row['recorded_at']:%Y-%m-%d %H:%M:%S} "
                          f"{row['estate'] or '-':<10} {row['event_id'] or '-':<36} x{row['attempts']} "
                          f"{row['reason'][:100]}")
                print(f"{len(rows)} dead letter(s)")
                return 0
            (service,) = args.service or [None]
            if service is None:
                raise SystemExit("--service is needed to show or replay")
            if args.action == "show":
                found = await deadletters.show_dead_letter(engine, service, args.id)
                if found is None:
                    print(f"no dead letter #{args.id} in {service}", file=sys.stderr)
                    return 1
                print(json.dumps(found, default=str, ensure_ascii=False, indent=2))
                return 0
            if args.id is None and not args.all:
                raise SystemExit("replay needs an id or --all")
            nats_url = args.nats_url or os.environ.get("ESTATEDESK_NATS_URL") or _endpoints(args)["nats"]
            try:
                done = await deadletters.replay_dead_letters(
                    engine, nats_url, service, ids=None if args.all else [args.id],
                    replayed_by=args.by or os.environ.get("USER", "operator"),
                    estate=args.estate if args.all else None,
                )
            except LookupError as error:
                print(error, file=sys.stderr)
                return 1
            for item in done:
                print(f"replayed {service} #{item['id']} (event {item['event_id']}) as stream seq {item['stream_seq']}")
            print(f"{len(done)} replayed")
            return 0
        finally:
            for each in engines.values():
                await each.dispose()

    return asyncio.run(run())


def service_database_url(args, service: str) -> str:
    """A service's database: --database-url, else ESTATEDESK_DATABASE_URL_<SERVICE> or
    ESTATEDESK_DATABASE_URL, else the running stack's endpoints.json."""
    from shared.settings import database_url_for

    url = getattr(args, "database_url", None) or database_url_for(service)
    if url:
        return url
    endpoints = _endpoints(args)
    return endpoints.get("databases", {}).get(service) or endpoints["database"]


def _endpoints(args) -> dict:
    path = _data_dir(args) / "endpoints.json"
    if not path.exists():
        raise SystemExit(f"{path} not found: is `estatedesk up` running? Or pass the URL.")
    return json.loads(path.read_text())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="estatedesk", description="EstateDesk: property-management customer service.")
    parser.add_argument("--data-dir", help="data directory (default ./.estatedesk or $ESTATEDESK_DATA_DIR)")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="start everything (embedded servers unless URLs are given)")
    up.add_argument("--nats-url", help="NATS server(s), comma-separated for a cluster")
    up.add_argument("--database-url", help="the shared database (a service's own: ESTATEDESK_DATABASE_URL_<SERVICE>)")
    up.add_argument("--nats-cluster", type=int, default=0, metavar="N",
                    help="start an embedded N-node NATS cluster (3: stream and directory replicated R3)")
    up.add_argument("--nats-replicas", type=int, default=0, metavar="R",
                    help="copies of the ticket stream and directory bucket (default: 3 on a cluster, else 1)")
    up.add_argument("--replicas", type=int, default=1, metavar="N", help="processes per service (default 1)")
    up.add_argument("--postgres-servers", type=int, default=1, metavar="N",
                    help="embedded PostgreSQL servers to split the services across (default 1)")
    up.add_argument("--demo", action="store_true", help="load a demo company and feed it live requests")
    up.add_argument("--speed", type=float, default=60.0, help="demo clock acceleration (default 60×)")
    up.add_argument("--seed", type=int, default=None,
                    help="seed of the demo's random choices (same seed, same requests; default: a new show each time)")
    up.set_defaults(func=cmd_up)

    run = sub.add_parser("run", help="run one service (replicas, separate hosts)")
    run.add_argument("service", choices=SERVICES)
    run.add_argument("--nats-url")
    run.add_argument("--database-url")
    run.add_argument("--port", type=int)
    run.add_argument("--migrate", action="store_true", help="apply the service's migrations first")
    run.set_defaults(func=cmd_run)

    mig = sub.add_parser("migrate", help="apply database migrations")
    mig.add_argument("services", nargs="*", help=f"any of {', '.join(SERVICES)} (default: all)")
    mig.add_argument("--database-url")
    mig.set_defaults(func=cmd_migrate)

    tok = sub.add_parser("token", help="issue a bearer token")
    tok.add_argument("--staff", required=True)
    tok.add_argument("--name")
    tok.add_argument("--role", action="append", required=True)
    tok.add_argument("--estate", action="append", default=[], help="estate code, or '*' for all")
    tok.add_argument("--department", action="append", default=[])
    tok.add_argument("--days", type=int, default=30)
    tok.set_defaults(func=cmd_token)

    dirc = sub.add_parser("directory", help="load company, estates, departments, staff and policies")
    dirc.add_argument("file")
    dirc.add_argument("--nats-url")
    dirc.set_defaults(func=cmd_directory)

    ngx = sub.add_parser("nginx", help="write (or --check) deploy/nginx/estatedesk.conf, the gateway's nginx twin")
    ngx.add_argument("--output", default=str(Path(__file__).resolve().parent.parent / "deploy" / "nginx" /
                                             "estatedesk.conf"))
    ngx.add_argument("--check", action="store_true")
    ngx.set_defaults(func=cmd_nginx)

    rls = sub.add_parser("roles", help="print which roles may call each write route (the README's table)")
    rls.set_defaults(func=cmd_roles)

    rev = sub.add_parser("revision", help="(developers) autogenerate a service's next migration")
    rev.add_argument("service", choices=SERVICES)
    rev.add_argument("-m", "--message", required=True)
    rev.set_defaults(func=cmd_revision)

    api = sub.add_parser("asyncapi", help="write (or --check) the AsyncAPI document")
    api.add_argument("--output", default=str(Path(__file__).resolve().parent.parent / "docs" / "asyncapi.json"))
    api.add_argument("--check", action="store_true")
    api.set_defaults(func=cmd_asyncapi)

    dl = sub.add_parser("dead-letters", help="list, show and replay what the services set aside")
    dl.add_argument("action", choices=("list", "show", "replay"))
    dl.add_argument("id", nargs="?", type=int, help="dead letter id (show, replay)")
    dl.add_argument("--service", action="append", choices=SERVICES, help="(list: any number; show/replay: one)")
    dl.add_argument("--estate", help="list, replay --all: only this estate's")
    dl.add_argument("--all", action="store_true", help="replay: every dead letter of the service (of --estate)")
    dl.add_argument("--by", help="replay: who replays (recorded; default $USER)")
    dl.add_argument("--json", action="store_true", help="list: as JSON")
    dl.add_argument("--database-url")
    dl.add_argument("--nats-url")
    dl.set_defaults(func=cmd_dead_letters)

    # Each service may add its own commands (e.g. `estatedesk analytics rebuild`) in
    # services/<name>/cli.py with a `register(subparsers)` function.
    for name in SERVICES:
        try:
            module = importlib.import_module(f"services.{name}.cli")
        except ModuleNotFoundError as error:
            if error.name != f"services.{name}.cli":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
