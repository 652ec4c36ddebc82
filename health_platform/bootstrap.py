"""Composition root: the concrete adapters are chosen here, once, from settings.

Domain code asks for `ledger()`; it never knows which backend runs.
"""

import os
import threading

from django.conf import settings

from ledger import LedgerClient, open_ledger
from ledger.contracts import Contracts

_lock = threading.Lock()
_ledger: tuple[int, str, LedgerClient] | None = None


def ledger() -> LedgerClient:
    """The process's ledger client, opened from settings.LEDGER_URL.

    Reopened after a fork (Celery's prefork pool) and when the setting changes (tests), so that no
    connection is shared between processes.
    """
    global _ledger
    url = settings.LEDGER_URL
    with _lock:
        if _ledger is None or _ledger[0] != os.getpid() or _ledger[1] != url:
            _ledger = (os.getpid(), url, open_ledger(url))
        return _ledger[2]


def contracts() -> Contracts:
    """The platform's contracts over the process's ledger client: the one door apps use."""
    return Contracts(ledger())


def reset_ledger() -> None:
    """Forget the cached client (tests that swap the ledger file)."""
    global _ledger
    with _lock:
        if _ledger is not None:
            _ledger[2].close()
        _ledger = None
