"""Callback 回访: every valid complaint and every repair called back; unsatisfied owners
sent round again."""

from services.callback import store
from shared.service import Service, create_http_app

service = Service("callback", store.metadata, title="Callback 回访",
                  description="Callback schedule, records, walk-around visits and recurrence decisions.")


def create_app(manage_lifecycle: bool = True):
    return create_http_app(service, manage_lifecycle=manage_lifecycle)
