"""Issue 9: the tables are what the code declares — each service's migrations produce
exactly its metadata (so a limit changed in `shared/limits.py` without a migration
fails here), and every column that holds a declared field is at least that wide."""

from __future__ import annotations

import importlib

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from shared import limits
from shared.settings import SERVICES

pytestmark = pytest.mark.integration

# Column name → the declared limit its values come from.
WIDTHS = {
    "estate": limits.ESTATE_CODE_MAX, "form_number": limits.FORM_NUMBER_MAX, "category": limits.CATEGORY_MAX,
    "ticket_id": limits.ID_MAX, "first_contact": limits.ID_MAX, "owner_id": limits.ID_MAX,
    "department": limits.DEPARTMENT_CODE_MAX, "client_request_id": limits.CLIENT_ID_MAX,
}


@pytest.mark.parametrize("name", SERVICES)
async def test_migrations_produce_the_declared_tables(db, name):
    metadata = importlib.import_module(f"services.{name}.store").metadata

    def diff(connection):
        context = MigrationContext.configure(connection, opts={
            "compare_type": True, "include_schemas": True,
            "include_name": lambda n, type_, parent: (type_ != "schema" or n == metadata.schema)
            and not (type_ == "table" and n == "alembic_version"),
        })
        return compare_metadata(context, metadata)

    async with db.connect() as conn:
        differences = await conn.run_sync(diff)
    assert differences == [], differences


@pytest.mark.parametrize("name", SERVICES)
def test_columns_are_as_wide_as_the_fields_they_hold(name):
    metadata = importlib.import_module(f"services.{name}.store").metadata
    for table in metadata.tables.values():
        for column in table.columns:
            limit = WIDTHS.get(column.name)
            if limit and isinstance(column.type, sa.String) and column.type.length:
                assert column.type.length >= limit, (table.name, column.name, column.type.length, limit)
