"""Factories for training runs written straight to the database, as a request leaves them (their keys aside: the
tests that use them never run them)."""

from factory.django import DjangoModelFactory

from training.models import TrainingRun


class TrainingRunFactory(DjangoModelFactory):
    """A one-round logistic breast-cancer run, queued, with no candidates; pass `steward` and what the test is about."""

    class Meta:
        model = TrainingRun

    model_family = "breast-cancer"
    kind = "logistic"
    rounds_requested = 1
    organisations: dict[str, list[int]] = {}
    sealed_secret_context = b""
