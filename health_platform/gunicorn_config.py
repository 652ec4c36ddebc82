"""gunicorn's configuration: the web server as scripts/web.sh starts it (make run, make load, the tests).

    gunicorn --config python:health_platform.gunicorn_config health_platform.wsgi --bind ... --workers ...

Free of Django: gunicorn's master process reads this module before it loads the application.

- The access log carries no value a client sent: the request's method, path and protocol, status, size and
  time, never its query string, its referrer, its user agent, its user name or any header (a query string
  such as ?patient=<identifier> reached the production log whole through gunicorn's default "%(r)s"). The
  path is withheld past its first two segments, as the platform's own log lines withhold it
  (health_platform.log_filters.path_redacted): a client can put anything in a path. The logger class
  enforces this for any access_log_format: an atom it does not keep is logged as "-".
- Every answer carries a code, gunicorn's own too. Request lines of up to 8190 bytes (gunicorn's largest
  limit) reach the platform, which answers a URL that is merely too long itself (414 uri_too_long, JSON under
  /api/, the portal's page elsewhere: health_platform.request_limits). What gunicorn still refuses before the
  platform sees it (a longer line, a malformed request, headers too large) is answered by JsonErrorWorker
  with the API's `{"code", "message", "detail"}` (the path is not known there), and logged by the class of
  the error only: gunicorn's own message quotes the request line, query string included.
- The control socket (gunicornc's, gunicorn 25.1+) goes to the platform's var folder, as everything else the
  platform writes, never to the user's home folder (gunicorn's default when XDG_RUNTIME_DIR is unset:
  ~/.gunicorn/gunicorn.ctl, which every gunicorn of that user, tests included, would share). It is left out
  when that folder's path is too long for a unix socket.
"""

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from ssl import SSLError
from typing import Any

from gunicorn import glogging, util
from gunicorn.http import errors as http_errors
from gunicorn.http.wsgi import Response, default_environ
from gunicorn.workers.sync import SyncWorker

from health_platform.celery_config import var_dir, worker_variables
from health_platform.log_filters import path_redacted

# A unix socket's path holds at most 107 bytes on Linux (sun_path is 108, with the terminating NUL).
UNIX_SOCKET_PATH_MAX_BYTES = 107


def control_socket_path() -> str | None:
    """Where gunicorn's control socket goes: the var folder (HEALTH_PLATFORM_VAR_DIR or .env's, else var/), or
    None when that path is too long to bind."""
    path = var_dir(worker_variables()) / "gunicorn.ctl"
    return str(path) if len(str(path).encode()) <= UNIX_SOCKET_PATH_MAX_BYTES else None


# What the access log may show, of gunicorn's atoms: the client's address, times, status and sizes, and the
# request's method and protocol. The path ("U", and within "r") is redacted; everything else ("q" the query
# string, "f" the referrer, "a" the user agent, "u" the user, "{name}i/o/e" headers and environment) is left out.
ACCESS_LOG_ATOMS = ("h", "l", "t", "s", "m", "H", "b", "B", "T", "D", "M", "L", "p")
ACCESS_LOG_FORMAT = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(L)s'


class AccessLogWithoutValues(glogging.Logger):
    """gunicorn's logger, whose access log lines hold no value a client sent (see the module's docstring)."""

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: timedelta) -> dict[str, Any]:
        every = super().atoms(resp, req, environ, request_time)
        kept = {name: every[name] for name in ACCESS_LOG_ATOMS if name in every}
        path = path_redacted(str(environ.get("PATH_INFO") or getattr(req, "path", None) or "-"))
        kept["U"] = path
        kept["r"] = f"{kept.get('m') or '-'} {path} {kept.get('H') or '-'}"
        return kept


@dataclass(frozen=True)
class Refusal:
    """gunicorn's answer to a request it could not hand to the platform. The message names no part of it."""

    status: int
    reason: str
    code: str
    message: str


SERVER_ERROR = Refusal(500, "Internal Server Error", "server_error", "The server could not answer the request.")
# The first entry whose classes match the error wins; a client's error is 4xx (or 501), any other error 500.
REFUSALS: tuple[tuple[tuple[type[BaseException], ...], Refusal], ...] = (
    ((http_errors.InvalidResponseHeader, http_errors.InvalidResponseHeaderName), SERVER_ERROR),  # the app's fault
    ((http_errors.ConfigurationProblem,), SERVER_ERROR),
    (
        (http_errors.LimitRequestLine,),
        Refusal(414, "URI Too Long", "uri_too_long", "The URL is longer than the platform accepts."),
    ),
    (
        (http_errors.LimitRequestHeaders,),
        Refusal(
            431,
            "Request Header Fields Too Large",
            "request_headers_too_large",
            "The request's headers are larger than the platform accepts.",
        ),
    ),
    (
        (http_errors.UnsupportedTransferCoding,),
        Refusal(501, "Not Implemented", "unsupported_transfer_coding", "The transfer coding is not supported."),
    ),
    (
        (http_errors.ExpectationFailed,),
        Refusal(417, "Expectation Failed", "expectation_failed", "The expectation cannot be met."),
    ),
    (
        (http_errors.ForbiddenProxyRequest, SSLError),
        Refusal(403, "Forbidden", "forbidden", "The request is not accepted."),
    ),
    ((http_errors.ParseException,), Refusal(400, "Bad Request", "malformed_request", "The request is not valid HTTP.")),
)


def refusal_of(error: BaseException) -> Refusal:
    return next((refusal for classes, refusal in REFUSALS if isinstance(error, classes)), SERVER_ERROR)


class JsonErrorWorker(SyncWorker):
    """gunicorn's sync worker, whose own error answers are the API's JSON with a stable code (gunicorn writes an
    HTML page without one) and whose error log names the class of the error, never the request line."""

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        started = datetime.now()
        addr = addr or ("", -1)  # a unix socket's peer
        refusal = refusal_of(exc)
        if refusal.status >= 500:
            self.log.exception("Error handling request (%s)", type(exc).__name__)
        else:
            self.log.warning("Refused a request: %s %s (%s)", refusal.status, refusal.code, type(exc).__name__)
        body = json.dumps({"code": refusal.code, "message": refusal.message, "detail": None}).encode()
        if req is not None:  # the request line was read: the access log has a line for it, as gunicorn's has
            environ = default_environ(req, client, self.cfg)
            environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = addr[0], str(addr[1])
            response = Response(req, client, self.cfg)
            response.status = f"{refusal.status} {refusal.reason}"
            response.response_length = len(body)
            self.log.access(response, req, environ, datetime.now() - started)
        head = (
            f"HTTP/1.1 {refusal.status} {refusal.reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        try:
            util.write_nonblock(client, head.encode("latin-1") + body)
        except Exception:
            self.log.debug("Failed to send error message.")


# --- the settings gunicorn reads (module-level names that are gunicorn settings) ------------------

accesslog = "-"
access_log_format = ACCESS_LOG_FORMAT
logger_class = "health_platform.gunicorn_config.AccessLogWithoutValues"
worker_class = "health_platform.gunicorn_config.JsonErrorWorker"
limit_request_line = 8190  # gunicorn's largest: the platform answers a long URL itself (REQUEST_URI_MAX_BYTES)
graceful_timeout = 10
_control_socket = control_socket_path()
control_socket_disable = _control_socket is None
if _control_socket is not None:
    control_socket = _control_socket
