"""health_platform.request_limits through Django's test client: where the limits fall, and the answers' shapes.
(tests/health_platform/test_web_server.py sends the same requests to the real web server.)"""

import pytest

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
