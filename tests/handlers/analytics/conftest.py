import pytest

from tests.handlers.analytics.fakes import FakeAnalyticsUnitOfWork


@pytest.fixture
def uow(sink) -> FakeAnalyticsUnitOfWork:
    return FakeAnalyticsUnitOfWork(sink)
