"""gunicorn's configuration: the web server as scripts/web.sh starts it (make run, make load, the tests).

    gunicorn --config python:health_platform.gunicorn_config health_platform.wsgi --bind ... --workers ...

Free of Django: gunicorn's master process reads this module before it loads the application.

- The access log carries no value a client sent: the request's method, path and protocol, status, size and
  time, never its query string, its referrer, its user agent, its user name or any header (a query string
  such as ?patient=<identifier> reached the production log whole through gunicorn's default "%(r)s"). The
  path is withheld past its first two segments, as the platform's own log lines withhold it
  (health_platform.log_filters.path_redacted): a client can put anything in a path. The logger class
  enforces this for any access_log_format: an atom it does not keep is logged as "-".
- The control socket (gunicornc's, gunicorn 25.1+) goes to the platform's var folder, as everything else the
  platform writes, never to the user's home folder (gunicorn's default when XDG_RUNTIME_DIR is unset:
  ~/.gunicorn/gunicorn.ctl, which every gunicorn of that user, tests included, would share). It is left out
  when that folder's path is too long for a unix socket.
"""

from datetime import timedelta
from typing import Any

from gunicorn import glogging

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


# --- the settings gunicorn reads (module-level names that are gunicorn settings) ------------------

accesslog = "-"
access_log_format = ACCESS_LOG_FORMAT
logger_class = "health_platform.gunicorn_config.AccessLogWithoutValues"
graceful_timeout = 10
_control_socket = control_socket_path()
control_socket_disable = _control_socket is None
if _control_socket is not None:
    control_socket = _control_socket
