"""Archive 归档: closed countersign forms as a tamper-evident record."""

from services.archive import store
from shared.service import Service, create_http_app

service = Service("archive", store.metadata, title="Archive 归档",
                  description="Hash-chained archived forms, volumes and catalogues, lending and destruction.")


def create_app(manage_lifecycle: bool = True):
    return create_http_app(service, manage_lifecycle=manage_lifecycle)
