"""One platform instance per organisation, sharing only the ledger: the deployment issue 18 names.

St Mary's is this test's instance (its database, its worker: the test's process). Northgate is a second instance
started for the test: its own SQLite database, var folder (its own record and pseudonym keys), blob folder, broker,
web server (gunicorn) and custodian worker (Celery), every one of them a process of its own, with the same embedded
ledger file. The steward at St Mary's asks for a run; St Mary's invites Northgate over the signed service API;
Northgate's worker gates and logs its own records on the ledger and sends its encrypted update to the run's
aggregator; at the end St Mary's reads Northgate's manifest leaves and writes the lineage of both. The scenario and
its checks: tests.training.second_instance.federated_across_two_instances (the Fabric variant:
tests/fabric/test_training.py).
"""

import pytest

from tests.training.conftest import organisations, people, steward, two_instances  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.he, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_a_run_federates_two_instances_each_with_its_own_database_and_workers_sharing_only_the_ledger(
    organisations,  # noqa: F811
    two_instances,  # noqa: F811
    ledger_url,
):
    two_instances({"LEDGER_URL": ledger_url})
