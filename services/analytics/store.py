"""The analytics service's tables."""

import sqlalchemy as sa  # noqa: F401  (tables are added as the service grows)

from shared.db import service_metadata

metadata = service_metadata("analytics")
