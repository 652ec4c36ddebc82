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
            _ledger = (os.getpid(), url, open_ledger(url, busy_timeout_seconds=settings.LEDGER_BUSY_TIMEOUT_SECONDS))
        return _ledger[2]


def ledger_retry_countdown(*, retries: int) -> float:
    """Seconds before the next attempt at work the ledger did not answer (a pipeline step, an export): doubling
    from ANALYTICS_LEDGER_RETRY_BACKOFF_SECONDS, at most ANALYTICS_LEDGER_RETRY_MAX_BACKOFF_SECONDS."""
    first, cap = settings.ANALYTICS_LEDGER_RETRY_BACKOFF_SECONDS, settings.ANALYTICS_LEDGER_RETRY_MAX_BACKOFF_SECONDS
    return float(min(first * 2 ** min(retries, 32), cap))


def contracts() -> Contracts:
    """The platform's contracts over the process's ledger client: the one door apps use."""
    return Contracts(ledger(), group_grants=settings.LEDGER_GROUP_GRANTS)


def reset_ledger() -> None:
    """Forget the cached client (tests that swap the ledger file)."""
    global _ledger
    with _lock:
        if _ledger is not None:
            _ledger[2].close()
        _ledger = None
