"""Tests against a real Fabric network (marker `fabric`): the session's network from tests/fabric/network.py,
skipped with the reason when FABRIC_BIN_DIR is not set.

`ledger_url` here replaces the root conftest's embedded ledger with the Fabric network for every test in
this folder, and gives each test its own PSEUDONYM_KEY: the network keeps every test's consents and
anchors for the whole session, and fresh pseudonyms keep one test's patients from meeting another's.
"""

import base64
import os

import pytest

from tests.conftest import ledger_at
from tests.fabric.network import shared_network


@pytest.fixture
def fabric_network(request):
    return shared_network(request)


@pytest.fixture(autouse=True)
def ledger_url(fabric_network, settings, monkeypatch):
    """The application on `fabric_network` (a module that needs a network of its own overrides that fixture)."""
    for name, value in fabric_network.client_environment.items():
        monkeypatch.setenv(name, value)
    settings.PSEUDONYM_KEY = base64.b64encode(os.urandom(32)).decode()
    with ledger_at(settings, fabric_network.ledger_url) as url:
        yield url
