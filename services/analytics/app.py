"""Analytics 统计分析: the quality office's read model, reports and live dashboard."""

from services.analytics import store
from shared.service import Service, create_http_app

service = Service("analytics", store.metadata, title="Analytics 统计分析",
                  description="Monthly estate reports, company consolidation and the live dashboard.")


def create_app(manage_lifecycle: bool = True):
    return create_http_app(service, manage_lifecycle=manage_lifecycle)
