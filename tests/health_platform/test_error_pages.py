"""The 403, 404 and 500 pages: the portal's look with its navigation and sign-out, the API's JSON errors under
/api/, and a 500 page that needs neither the database nor the template context processors."""

import re

import pytest
from django.test import Client, RequestFactory, override_settings

from health_platform.roles import Role
from health_platform.views import server_error
from tests.records.factories import UserFactory

ERROR_URLS = "tests.health_platform.error_urls"


@pytest.fixture
def client_raising_nothing() -> Client:
    return Client(raise_request_exception=False)


@pytest.fixture
def signed_in(client_raising_nothing: Client) -> Client:
    client_raising_nothing.force_login(UserFactory(username="errors-clinician", roles=[Role.CLINICIAN]))
    return client_raising_nothing


def assert_portal_page(response, status: int, code: str) -> str:
    assert response.status_code == status
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert 'href="/static/health_platform/base.css"' in page  # the portal's look
    assert '<a class="brand" href="/"' in page
    assert f"<code data-error-code>{code}</code>" in page
    assert "Go to your start page" in page
    return page


@pytest.mark.django_db
def test_a_missing_portal_page_has_the_portals_navigation_and_sign_out(signed_in):
    page = assert_portal_page(signed_in.get("/no-such-page/MRN-000777/"), 404, "not_found")
    assert 'aria-label="Main"' in page
    assert "Consents granted to me" in page  # the clinician's navigation
    assert re.search(r'<form method="post" action="/accounts/logout/">', page)
    assert "Sign out" in page
    assert "MRN-000777" not in page  # the path asked for is never repeated


@pytest.mark.django_db
def test_a_missing_page_offers_sign_in_to_someone_signed_out(client_raising_nothing):
    page = assert_portal_page(client_raising_nothing.get("/no-such-page/"), 404, "not_found")
    assert 'href="/accounts/login/"' in page
    assert "Sign out" not in page


@pytest.mark.django_db
def test_an_unknown_api_path_answers_json_not_found(signed_in):
    response = signed_in.get("/api/no-such-endpoint/")
    assert response.status_code == 404
    assert response.json() == {"code": "not_found", "message": "Not found.", "detail": None}


@pytest.mark.django_db
@override_settings(ROOT_URLCONF=ERROR_URLS)
def test_a_permission_denied_no_view_answered_is_the_portals_403_page(signed_in):
    page = assert_portal_page(signed_in.get("/portal-refuses/"), 403, "permission_denied")
    assert "Sign out" in page


@pytest.mark.django_db
@override_settings(ROOT_URLCONF=ERROR_URLS)
def test_a_permission_denied_under_the_api_is_json(signed_in):
    response = signed_in.get("/api/refuses/")
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    assert set(response.json()) == {"code", "message", "detail"}


@pytest.mark.django_db
@override_settings(ROOT_URLCONF=ERROR_URLS)
def test_an_unexpected_fault_is_the_portals_500_page_with_sign_out(signed_in):
    page = assert_portal_page(signed_in.get("/portal-fails/"), 500, "server_error")
    assert "Sign out" in page
    assert re.search(r'name="csrfmiddlewaretoken" value="[^"]+"', page)
    assert "a fault the view did not expect" not in page


@pytest.mark.django_db
@override_settings(ROOT_URLCONF=ERROR_URLS)
def test_an_unexpected_fault_under_the_api_is_json_server_error(signed_in):
    response = signed_in.get("/api/fails/")
    assert response.status_code == 500
    assert response.json() == {
        "code": "server_error",
        "message": "The server could not answer this request.",
        "detail": None,
    }


def test_the_500_page_needs_no_database(django_db_blocker):
    """Rendered with the database unreachable (pytest-django refuses every query here): no context processor
    (the roles' reads the user's groups) and no session is touched."""
    request = RequestFactory().get("/somewhere/")
    with django_db_blocker.block():
        response = server_error(request)
    page = response.content.decode()
    assert response.status_code == 500
    assert "Something went wrong" in page
    assert 'href="/static/health_platform/base.css"' in page
    assert "Sign out" in page
