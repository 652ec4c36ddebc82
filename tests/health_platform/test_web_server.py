"""The web server as `make run` starts it (scripts/web.sh: gunicorn with health_platform.gunicorn_config), tested
as a client meets it: over a socket, against the real gunicorn."""

import json
import select
import socket
import stat
import subprocess
import urllib.request
from pathlib import Path

import pytest
from django.contrib.auth.hashers import make_password
from rest_framework.authtoken.models import Token

from health_platform import gunicorn_config
from records.models import Record
from tests.conftest import REPO
from tests.records.factories import PASSWORD, bundle, encode, patient_account, patient_with_observations

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def everything_under(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


def test_the_control_socket_is_in_the_var_folder_and_nothing_is_written_to_home(start_web, tmp_path):
    """gunicorn's default is ~/.gunicorn/gunicorn.ctl when XDG_RUNTIME_DIR is unset: shared by every gunicorn of
    the user, outside the platform's folders."""
    home, var = tmp_path / "home", tmp_path / "var"
    home.mkdir()

    web = start_web(overrides={"HOME": str(home), "HEALTH_PLATFORM_VAR_DIR": str(var), "XDG_RUNTIME_DIR": None})
    with urllib.request.urlopen(f"{web.url}/api/schema/", timeout=30) as response:
        assert response.status == 200

    control = var / "gunicorn.ctl"
    assert stat.S_ISSOCK(control.stat().st_mode)
    assert stat.S_IMODE(control.stat().st_mode) == 0o600
    # It is gunicorn's control socket: gunicornc reaches the server through it.
    shown = subprocess.run(
        [str(REPO / ".venv" / "bin" / "gunicornc"), "--socket", str(control), "--command", "show workers", "--json"],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin", "HOME": str(home)},
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["count"] == 1
    assert everything_under(home) == []


def test_the_control_socket_is_left_out_when_the_var_folder_is_too_deep_for_a_unix_socket(monkeypatch, tmp_path):
    deep = tmp_path / ("d" * 100)
    monkeypatch.setenv("HEALTH_PLATFORM_VAR_DIR", str(deep))
    assert gunicorn_config.control_socket_path() is None

    monkeypatch.setenv("HEALTH_PLATFORM_VAR_DIR", str(tmp_path / "var"))
    assert gunicorn_config.control_socket_path() == str(tmp_path / "var" / "gunicorn.ctl")


def test_the_configuration_loads_no_django():
    """gunicorn's master reads it before the application: settings read there would be read too early."""
    loaded = subprocess.run(
        [
            str(REPO / ".venv" / "bin" / "python"),
            "-c",
            "import sys, health_platform.gunicorn_config; print([m for m in sys.modules if m.startswith('django')])",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert loaded.stdout.strip() == "[]"


def connect(web) -> socket.socket:
    host, port = web.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=60)


def raw_exchange(web, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send `request` as written on a new connection and read the whole answer: (status, headers, body)."""
    with connect(web) as connection:
        connection.sendall(request)
        return answer_on(connection)


def answer_on(connection: socket.socket) -> tuple[int, dict[str, str], bytes]:
    answer = b""
    while chunk := connection.recv(65536):
        answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in header_lines)}
    if headers.get("transfer-encoding") == "chunked":
        body = dechunked(body)
    return int(status_line.split()[1]), headers, body


def dechunked(body: bytes) -> bytes:
    content = b""
    while True:
        size, _, rest = body.partition(b"\r\n")
        length = int(size.split(b";")[0], 16)
        if length == 0:
            return content
        content, body = content + rest[:length], rest[length + 2 :]


def get(web, target: str, *extra_headers: str) -> tuple[int, dict[str, str], bytes]:
    lines = [f"GET {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close", *extra_headers, "", ""]
    return raw_exchange(web, "\r\n".join(lines).encode("latin-1"))


def assert_api_error(answer: tuple[int, dict[str, str], bytes], status: int, code: str) -> None:
    got_status, headers, body = answer
    assert (got_status, headers["content-type"]) == (status, "application/json"), body[:300]
    document = json.loads(body)
    assert set(document) == {"code", "message", "detail"}
    assert document["code"] == code


SECRET = "ZQX-7781-MRN"  # a patient identifier, put where a client can put anything


def test_a_url_too_long_is_answered_414_uri_too_long_by_the_platform_in_the_shape_of_its_kind(start_web, settings):
    web = start_web()
    target = f"?patient={SECRET}&pad={'a' * (settings.REQUEST_URI_MAX_BYTES + 100)}"

    assert_api_error(get(web, f"/api/records/{target}"), 414, "uri_too_long")
    status, headers, body = get(web, f"/records/{target}")
    assert (status, headers["content-type"].split(";")[0]) == (414, "text/html")
    assert b"Address too long" in body
    assert "content-security-policy" in headers
    # A URL within the limit is answered as before.
    assert get(web, f"/api/records/?patient={SECRET}")[0] == 401
    assert SECRET not in web.output()


def test_a_request_line_longer_than_gunicorn_reads_is_refused_with_a_code_and_never_logged(start_web):
    """Past 8190 bytes gunicorn refuses the line before the platform sees it: its answer carries a code too."""
    web = start_web()
    target = f"?patient={SECRET}&pad={'a' * 9000}"

    for path in ("/api/records/", "/records/"):  # gunicorn has not read the path: the API's shape for both
        assert_api_error(get(web, f"{path}{target}"), 414, "uri_too_long")
    assert "Refused a request: 414 uri_too_long (LimitRequestLine)" in web.output()
    assert SECRET not in web.output()


def test_gunicorns_other_refusals_carry_a_code_and_their_log_lines_quote_nothing(start_web):
    web = start_web()

    malformed = raw_exchange(web, f"GET /api/records/?patient={SECRET} HTTP/1.1 x\r\nHost: a\r\n\r\n".encode())
    assert_api_error(malformed, 400, "malformed_request")
    too_large = get(web, "/api/records/", f"X-Patient: {SECRET}{'a' * 9000}")
    assert_api_error(too_large, 431, "request_headers_too_large")
    bad_header = get(web, "/api/records/", f"X-Patient {SECRET}: value")
    assert_api_error(bad_header, 400, "malformed_request")
    assert SECRET not in web.output()


def send_chunked(web, method: str, path: str, chunks, *headers: str) -> tuple[int, dict[str, str], bytes]:
    """Send a body as a client streams one of unknown length (curl -T -, a generator in requests):
    Transfer-Encoding: chunked, no Content-Length. Like curl, stop sending once the server has answered."""
    with connect(web) as connection:
        lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Transfer-Encoding: chunked", "Connection: close"]
        connection.sendall("\r\n".join([*lines, *headers, "", ""]).encode("latin-1"))
        try:
            for chunk in chunks:
                if select.select([connection], [], [], 0)[0]:
                    break  # answered before the end of the body
                connection.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            else:
                connection.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server stopped reading: its answer is waiting
        return answer_on(connection)


def pieces(data: bytes, size: int):
    return (data[start : start + size] for start in range(0, len(data), size))


def test_a_small_chunked_body_is_read_whole(start_web, custodian):
    """Django reads a body by its Content-Length: a chunked one was read as empty (400 for any upload)."""
    web = start_web()
    token = Token.objects.create(user=custodian).key
    document = encode(bundle(*patient_with_observations(mrn="MRN-CHUNKED", values=(1.0, 2.0))))

    ingested = send_chunked(
        web,
        "POST",
        "/api/records/",
        pieces(document, 100),
        f"Authorization: Token {token}",
        "Content-Type: application/fhir+json",
    )

    assert ingested[0] == 201, ingested[2][:300]
    [record] = json.loads(ingested[2])["records"]
    assert Record.objects.filter(pk=record["record_id"]).exists()
    # A JSON endpoint (DRF's parser) reads it too: a patient's token (a staff password yields none). The server
    # checks passwords with the production hasher.
    patient = patient_account("patient-chunked")
    patient.password = make_password(PASSWORD, hasher="pbkdf2_sha256")
    patient.save(update_fields=["password"])
    credentials = json.dumps({"username": patient.username, "password": PASSWORD}).encode()
    signed_in = send_chunked(web, "POST", "/api/auth/token/", pieces(credentials, 7), "Content-Type: application/json")
    assert (signed_in[0], json.loads(signed_in[2])) == (200, {"token": Token.objects.get(user=patient).key})


def test_a_chunked_upload_past_the_ingest_limit_is_413_payload_too_large(start_web, custodian, settings):
    web = start_web()
    token = Token.objects.create(user=custodian).key
    megabyte = b"x" * (1024 * 1024)

    answer = send_chunked(
        web,
        "POST",
        "/api/records/",
        (megabyte for _ in range(50)),
        f"Authorization: Token {token}",
        "Content-Type: application/fhir+json",
    )

    assert_api_error(answer, 413, "payload_too_large")
    assert json.loads(answer[2])["detail"] == {"max_bytes": settings.INGEST_MAX_BYTES}
    assert Record.objects.count() == 0


def test_a_chunked_body_past_the_largest_any_endpoint_takes_is_413_without_being_read_whole(start_web, custodian):
    limit = 2 * 1024 * 1024
    web = start_web(overrides={"REQUEST_BODY_MAX_BYTES": str(limit)})
    token = Token.objects.create(user=custodian).key
    megabyte = b"x" * (1024 * 1024)

    api = send_chunked(web, "POST", "/api/records/", (megabyte for _ in range(64)), f"Authorization: Token {token}")
    portal = send_chunked(web, "POST", "/consent/grant/", (megabyte for _ in range(64)))

    assert_api_error(api, 413, "payload_too_large")
    assert json.loads(api[2])["detail"] == {"max_bytes": limit}
    status, headers, body = portal
    assert (status, headers["content-type"].split(";")[0]) == (413, "text/html")
    assert b"The payload is larger than the configured limit." in body
