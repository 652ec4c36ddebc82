"""health_platform.request_limits through Django's test client: where the limits fall, and the answers' shapes.
(tests/health_platform/test_web_server.py sends the same requests to the real web server.)"""

import io

import pytest

from health_platform.request_limits import BODY_TOO_LARGE, BODY_TOO_LARGE_MESSAGE, ChunkedBodyRead

pytestmark = pytest.mark.django_db


def target_of_length(path: str, length: int) -> str:
    return f"{path}?pad={'a' * (length - len(path) - len('?pad='))}"


def test_a_url_of_the_limit_passes_and_one_byte_more_is_414(client, settings):
    settings.REQUEST_URI_MAX_BYTES = 200

    assert client.get(target_of_length("/api/records/", 200)).status_code == 401
    refused = client.get(target_of_length("/api/records/", 201))

    assert refused.status_code == 414
    assert refused.json() == {
        "code": "uri_too_long",
        "message": "The URL is longer than the platform accepts.",
        "detail": {"max_bytes": 200},
    }


def test_the_portal_answers_a_url_too_long_with_its_page(client, settings):
    settings.REQUEST_URI_MAX_BYTES = 200

    refused = client.get(target_of_length("/consent/", 300))

    assert refused.status_code == 414
    assert refused["Content-Type"].startswith("text/html")
    assert "Address too long" in refused.content.decode()
    assert "a" * 100 not in refused.content.decode()  # the URL is not repeated


# --- bodies sent without a length (Transfer-Encoding: chunked) ------------------------------------


class Stream(io.BytesIO):
    """A request body as gunicorn hands it on, counting what is read of it."""

    def __init__(self, data: bytes):
        super().__init__(data)
        self.bytes_read = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.bytes_read += len(data)
        return data


def handed_on(environ: dict) -> tuple[dict, bytes]:
    """What the application behind ChunkedBodyRead sees: its environ and the body it reads by CONTENT_LENGTH."""
    seen = {}

    def application(environ, start_response):
        seen.update(environ)
        seen["body"] = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        return [b""]

    answer = ChunkedBodyRead(application)(environ, lambda *args: None)
    getattr(answer, "close", lambda: None)()  # as the server does
    return seen, seen.pop("body")


def chunked(data: bytes, **more) -> dict:
    return {"HTTP_TRANSFER_ENCODING": "chunked", "wsgi.input_terminated": True, "wsgi.input": Stream(data), **more}


def test_a_chunked_body_is_handed_on_whole_with_its_length(settings):
    environ, body = handed_on(chunked(b'{"resourceType": "Bundle"}'))

    assert (environ["CONTENT_LENGTH"], body) == ("26", b'{"resourceType": "Bundle"}')
    assert BODY_TOO_LARGE not in environ


def test_a_chunked_body_past_the_limit_is_not_read_further_and_marked(settings):
    settings.REQUEST_BODY_MAX_BYTES = 1000
    stream = Stream(b"x" * 100_000)

    environ, body = handed_on(chunked(b"", **{"wsgi.input": stream}))

    assert stream.bytes_read == 1001
    assert (environ[BODY_TOO_LARGE], environ["CONTENT_LENGTH"], body) == (1000, "0", b"")


@pytest.mark.parametrize(
    "environ",
    [
        {"CONTENT_LENGTH": "3", "wsgi.input_terminated": True},  # a length: Django reads it
        {"HTTP_TRANSFER_ENCODING": "chunked"},  # a server that has not ended the body for us: left as it is
    ],
    ids=["with a length", "not terminated"],
)
def test_other_bodies_are_left_as_they_are(environ):
    stream = Stream(b"abc")

    seen, _ = handed_on({**environ, "wsgi.input": stream})

    assert seen["wsgi.input"] is stream
    assert BODY_TOO_LARGE not in seen


def test_the_largest_body_read_without_a_length_covers_every_endpoints_own_limit(settings):
    """Below an endpoint's limit, a chunked body that endpoint takes would be refused as too large."""
    from analytics.api import request_max_bytes
    from audit.api import verify_max_bytes

    assert (
        max(
            settings.INGEST_MAX_BYTES,
            settings.DATA_UPLOAD_MAX_MEMORY_SIZE,
            request_max_bytes(),
            verify_max_bytes() + 64 * 1024,  # the multipart envelope audit.api allows for
        )
        <= settings.REQUEST_BODY_MAX_BYTES
    )


def test_a_body_past_the_limit_is_answered_413_in_the_shape_of_its_kind(client, settings):
    api = client.post("/api/records/", b"", content_type="application/json", **{BODY_TOO_LARGE: 1000})
    portal = client.post("/consent/grant/", {}, **{BODY_TOO_LARGE: 1000})

    assert (api.status_code, api.json()) == (
        413,
        {"code": "payload_too_large", "message": BODY_TOO_LARGE_MESSAGE, "detail": {"max_bytes": 1000}},
    )
    assert (portal.status_code, portal["Content-Type"].split(";")[0]) == (413, "text/html")
    assert BODY_TOO_LARGE_MESSAGE in portal.content.decode()
