"""Shared fixtures. Every test gets its own embedded ledger file: real contracts, real SQLite."""

import pytest

from health_platform import bootstrap


@pytest.fixture(autouse=True)
def ledger_url(tmp_path, settings):
    """Point LEDGER_URL at a fresh embedded ledger for this test."""
    url = f"embedded://{tmp_path / 'ledger.sqlite3'}"
    settings.LEDGER_URL = url
    bootstrap.reset_ledger()
    yield url
    bootstrap.reset_ledger()


@pytest.fixture
def ledger(ledger_url):
    """The ledger client the application uses in this test."""
    return bootstrap.ledger()
