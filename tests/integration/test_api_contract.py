"""Issue 9: every service's API, walked from its own OpenAPI document.

- every write route is in the service's role table (and the table names no route that
  does not exist), and refuses a token that holds none of its roles with 403;
- every operation documents the one error shape;
- schemathesis, with a valid token, finds no server error and no answer that breaks the
  document (bounded in examples and time).
"""

from __future__ import annotations

import asyncio
import importlib
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from shared.auth import STAFF_ROLES
from shared.settings import SERVICES
from tests.conftest import auth, token_for

pytestmark = pytest.mark.integration

WRITE_METHODS = {"post", "put", "patch", "delete"}


def write_operations(document: dict) -> set[tuple[str, str]]:
    return {
        (method.upper(), path.removeprefix("/v1"))
        for path, operations in document["paths"].items()
        for method in operations
        if method in WRITE_METHODS
    }


def fill(path: str, estate: str) -> str:
    """A concrete URL for an OpenAPI path template."""
    out = path.replace("{estate}", estate)
    while "{" in out:
        start, end = out.index("{"), out.index("}")
        out = out[:start] + "x1" + out[end + 1:]
    return out


@pytest.mark.parametrize("name", SERVICES)
async def test_every_write_route_is_in_the_role_table_and_refuses_other_roles(stack, estate, name):
    service = importlib.import_module(f"services.{name}.app").service
    table = service.write_roles
    async with httpx.AsyncClient(base_url=stack.service(name).url, timeout=30) as client:
        document = (await client.get("/openapi.json")).json()
        # Owners' writes (issue 15) need an owner token, never a staff role: a staff token is refused.
        owner_writes = service.owner_routes
        operations = write_operations(document) - service.public_routes - owner_writes
        assert operations == set(table), (
            f"{name}: routes missing from the role table: {sorted(operations - set(table))}; "
            f"table entries without a route: {sorted(set(table) - operations)}"
        )
        # Signing in, and an owner asking for a binding code and binding with it (issue 15).
        assert service.public_routes <= {("POST", "/auth/login"), ("POST", "/owner/estates/{estate}/units/{unit}/code"),
                                         ("POST", "/owner/estates/{estate}/units/{unit}/bind")}, service.public_routes
        admin = token_for(stack, "admin", ["company_admin"], ["*"])
        for method, path in sorted(owner_writes):
            r = await client.request(method, "/v1" + fill(path, estate), json={}, headers=auth(admin))
            assert r.status_code == 401, (name, method, path, r.status_code, r.text)
        for (method, path), roles in sorted(table.items()):
            assert roles and set(roles) <= set(STAFF_ROLES), (method, path, roles)
            # Every known role the route does not name (company_admin may do anything).
            others = sorted(set(STAFF_ROLES) - set(roles) - {"company_admin"}) + ["integration"]
            for role in others:
                staff = "erp" if role == "integration" else ("qm-x" if role in {"quality_manager", "general_manager",
                        "management_representative"} else f"{estate}-cs01")
                estates = ["*"] if staff == "qm-x" else [estate]
                token = token_for(stack, staff, [role], estates)
                r = await client.request(method, "/v1" + fill(path, estate), json={}, headers=auth(token))
                assert r.status_code == 403, (name, method, path, role, r.status_code, r.text)
                assert "needs one of the roles" in r.json()["error"], r.text


@pytest.mark.parametrize("name", SERVICES)
async def test_every_operation_documents_the_error_shape_and_bearer_auth(stack, name):
    async with httpx.AsyncClient(base_url=stack.service(name).url, timeout=30) as client:
        document = (await client.get("/openapi.json")).json()
    assert "ErrorOut" in document["components"]["schemas"]
    for path, operations in document["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method, operation in operations.items():
            for status in ("401", "403", "404", "409", "422"):
                assert status in operation["responses"], (name, method, path, status)
                content = operation["responses"][status]["content"]
                # An HTML or PDF route documents its errors under its own media type.
                schema = content.get("application/json", next(iter(content.values())))["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorOut"}, (name, method, path, status)


def _schemathesis_config(tmp: Path, estate: str, token: str) -> Path:
    config = tmp / "schemathesis.toml"
    config.write_text(
        "[generation]\n"
        "max-examples = 12\n"
        "[parameters]\n"
        f'"path.estate" = "{estate}"\n'
        f'[headers]\nAuthorization = "Bearer {token}"\n'
    )
    return config


@pytest.mark.parametrize("name", SERVICES)
async def test_schemathesis_finds_no_server_error(stack, tmp_path, name, fuzz_estate):
    """A company admin's token (every role passes) against a fresh estate of its own; the
    company-wide writes are left out so the fuzzing changes nothing other tests see."""
    estate = fuzz_estate
    token = token_for(stack, "fuzz-admin", ["company_admin"], ["*"])
    config = _schemathesis_config(tmp_path, estate, token)
    binary = Path(sys.executable).parent / "schemathesis"
    run = await asyncio.to_thread(
        subprocess.run,
        [str(binary), "--config-file", str(config), "run", f"{stack.service(name).url}/openapi.json",
         "--checks", "not_a_server_error,response_schema_conformance", "--phases", "examples,coverage,fuzzing", "--workers", "1", "--max-time", "30",
         "--exclude-path-regex", "^/v1/company/(policy|calendar)$", "--exclude-path-regex", "^/v1/dashboard/stream$",
         "--request-timeout", "20", "--suppress-health-check", "all", "--no-color"],
        capture_output=True, text=True, timeout=240, cwd=tmp_path, env={**os.environ, "NO_COLOR": "1"},
    )
    report = run.stdout[-6000:] + run.stderr[-2000:]
    print(report)
    assert run.returncode == 0, report


@pytest.fixture
async def fuzz_estate(stack):
    from shared.directory import publish_directory
    from tests.conftest import demo_estate, wait_for_directory
    import uuid

    code = f"z{uuid.uuid4().hex[:8]}"
    await publish_directory(stack.nats_url, None, [demo_estate(code)])
    await wait_for_directory(stack, code)
    return code
