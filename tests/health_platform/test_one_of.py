"""health_platform.selectors.one_of: any number of values as one bound parameter, on either engine."""

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext

from health_platform.selectors import one_of


@pytest.fixture
def users(db):
    return [User.objects.create(username=f"one-of-{index}") for index in range(5)]


def test_ids_and_names_select_the_same_rows_as_an_in_list(users):
    wanted = users[1:4]
    by_id = User.objects.filter(pk__in=one_of([u.pk for u in wanted]))
    by_name = User.objects.filter(username__in=one_of([u.username for u in wanted]))

    assert set(by_id) == set(wanted)
    assert set(by_name) == set(wanted)
    assert not User.objects.filter(pk__in=one_of([])).exists()
    assert not User.objects.filter(username__in=one_of([])).exists()


def test_twenty_thousand_ids_are_one_parameter_of_one_query(users):
    many = [u.pk for u in users] + list(range(10**9, 10**9 + 20_000))

    with CaptureQueriesContext(connection) as queries:
        found = set(User.objects.filter(pk__in=one_of(many)).values_list("pk", flat=True))

    assert found == {u.pk for u in users}
    assert len(queries.captured_queries) == 1


@pytest.mark.parametrize("values", [[1, "1"], [1.5], [None], [b"x"]])
def test_anything_but_ints_or_strings_alone_is_refused(values):
    with pytest.raises(TypeError):
        one_of(values)
