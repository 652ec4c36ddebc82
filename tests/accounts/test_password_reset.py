"""Password reset by e-mail: a known address gets the link, an unknown one gets nothing, and the page cannot tell."""

import pytest
from django.core import mail
from django.test import Client

from tests.records.factories import UserFactory


@pytest.mark.django_db
def test_a_reset_for_an_address_of_no_account_sends_nothing_and_answers_as_for_a_known_one():
    UserFactory(username="reset-known", email="known@example.org")

    unknown = Client().post("/accounts/password/reset/", {"email": "nobody@example.org"})
    assert mail.outbox == []
    known = Client().post("/accounts/password/reset/", {"email": "known@example.org"})

    assert (unknown.status_code, unknown["Location"]) == (known.status_code, known["Location"])
    assert [message.to for message in mail.outbox] == [["known@example.org"]]
    assert "/accounts/password/reset/key/" in mail.outbox[0].body
