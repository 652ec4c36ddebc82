"""The second platform instance of the two-instance training tests (tests/training/test_two_instances.py): Northgate's
own database, var folder (its own record and pseudonym keys), blob folder and broker, sharing only the ledger with
the test's instance (St Mary's).

    python -m tests.training.second_instance COUNT     (in that instance's environment: see Instance.environment)

migrates its database, registers both organisations, ingests the breast-cancer demo patients 0..COUNT-1 (anchored on
the shared ledger), has each consent to Northgate training the breast-cancer model, and tampers with the first one's
stored record. Prints {"records": [record ids], "tampered": record id} as JSON on its last line."""

import json
import os
import sys


def seed(count: int) -> dict:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "health_platform.settings")
    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)

    from records.codes import BREAST_CANCER_DATASET
    from tests.conftest import tamper_with
    from tests.training_world import consent_to_training, people_ingested, two_organisations

    _, northgate = two_organisations()
    people = people_ingested(BREAST_CANCER_DATASET, count)
    for person in people:
        consent_to_training(person, northgate, BREAST_CANCER_DATASET)
    tamper_with(people[0].record)
    return {"records": [str(person.record.pk) for person in people], "tampered": str(people[0].record.pk)}


if __name__ == "__main__":
    print(json.dumps(seed(int(sys.argv[1]))))
