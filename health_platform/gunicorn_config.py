"""gunicorn's configuration: the web server as scripts/web.sh starts it (make run, make load, the tests).

    gunicorn --config python:health_platform.gunicorn_config health_platform.wsgi --bind ... --workers ...

Free of Django: gunicorn's master process reads this module before it loads the application.

- The control socket (gunicornc's, gunicorn 25.1+) goes to the platform's var folder, as everything else the
  platform writes, never to the user's home folder (gunicorn's default when XDG_RUNTIME_DIR is unset:
  ~/.gunicorn/gunicorn.ctl, which every gunicorn of that user, tests included, would share). It is left out
  when that folder's path is too long for a unix socket.
"""

from health_platform.celery_config import var_dir, worker_variables

# A unix socket's path holds at most 107 bytes on Linux (sun_path is 108, with the terminating NUL).
UNIX_SOCKET_PATH_MAX_BYTES = 107


def control_socket_path() -> str | None:
    """Where gunicorn's control socket goes: the var folder (HEALTH_PLATFORM_VAR_DIR or .env's, else var/), or
    None when that path is too long to bind."""
    path = var_dir(worker_variables()) / "gunicorn.ctl"
    return str(path) if len(str(path).encode()) <= UNIX_SOCKET_PATH_MAX_BYTES else None


# --- the settings gunicorn reads (module-level names that are gunicorn settings) ------------------

accesslog = "-"
graceful_timeout = 10
_control_socket = control_socket_path()
control_socket_disable = _control_socket is None
if _control_socket is not None:
    control_socket = _control_socket
