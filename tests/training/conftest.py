"""The training tests' fixtures, over the two organisations of tests/training_world.py (shared with the browser
tests)."""

import pytest

from tests.training_world import model_steward, people_ingested, two_organisations


@pytest.fixture
def steward(db):
    return model_steward()


@pytest.fixture
def organisations(db, ledger):
    """The two organisations' grantee ids, registered on the ledger."""
    return two_organisations()


@pytest.fixture
def people(db, ledger):
    """people(dataset, count) -> the dataset's demo patients 0..count-1 ingested (anchored), each with an account."""
    return people_ingested
