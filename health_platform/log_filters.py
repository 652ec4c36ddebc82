"""Logging filters that keep what clients send out of the logs."""

import logging


def path_redacted(path: str) -> str:
    """The path's first two segments ("/api/models/"), the rest withheld: enough to tell which endpoint."""
    segments = path.split("/")
    kept = "/".join(segments[:3])
    return kept + "/…" if any(segments[3:]) else path


class RequestPathRedacted(logging.Filter):
    """Django logs the path of every 4xx and 5xx ("Not Found: /api/models/<anything>/"), and a client can
    put anything in a path, a patient's identifier included. The path is logged with its ids withheld."""

    def filter(self, record: logging.LogRecord) -> bool:
        path = getattr(getattr(record, "request", None), "path", None)
        if isinstance(path, str) and isinstance(record.args, tuple):
            spelled = (path, path.encode("unicode_escape").decode("ascii"))
            record.args = tuple(path_redacted(path) if arg in spelled else arg for arg in record.args)
        return True
