"""`.env.example` documents every setting the platform reads from its environment.

An operator configures the platform from that file alone; a variable read in the code but missing there is a
setting nobody knows to set (a deadline, a sweep's period) until it bites.
"""

import re

from tests.conftest import REPO

PACKAGES = "health_platform accounts directory analytics audit records consent ledger chaincode".split()  # noqa: SIM905
# env.int("NAME", ...), os.environ.get("NAME"), os.environ["NAME"], variables.get("NAME", ...) (celery_config)
READ = re.compile(
    r"""(?:\benv\.\w+|\benviron\.get|\bvariables\.get|\bgetenv)\(\s*"([A-Z][A-Z0-9_]+)"|environ\["([A-Z][A-Z0-9_]+)"\]"""
)
# The WSGI and CGI keys a server's environ carries are a request's, not settings.
WSGI_KEYS = {"CONTENT_LENGTH", "PATH_INFO", "REMOTE_ADDR", "REMOTE_PORT", "HTTP_TRANSFER_ENCODING", "PATH"}
# Set by the platform's own scripts and tests for the processes they start, never by an operator.
INTERNAL = {"DJANGO_SETTINGS_MODULE", "CI", "PYTEST_XDIST_WORKER"}


def variables_read() -> set[str]:
    names = set()
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            for match in READ.finditer(path.read_text()):
                names.add(match.group(1) or match.group(2))
    return names - WSGI_KEYS - INTERNAL


def variables_documented() -> set[str]:
    text = (REPO / ".env.example").read_text()
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, flags=re.MULTILINE))


def test_the_settings_are_found_in_the_code():
    # The scan itself works: settings known to be read are among what it finds.
    assert {"DJANGO_SECRET_KEY", "LEDGER_BUSY_TIMEOUT_SECONDS", "ANCHOR_SWEEP_SECONDS", "CELERY_BROKER_URL"} <= (
        variables_read()
    )


def test_every_setting_the_code_reads_is_documented_in_env_example():
    missing = sorted(variables_read() - variables_documented())
    assert not missing, f".env.example does not mention: {missing}"
