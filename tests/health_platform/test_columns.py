"""Every code the ledger may hand back fits the column that stores it, and the models match their migrations.

SQLite does not enforce a column's length; PostgreSQL refuses the row. A code that outgrows its column
therefore passes the SQLite tests and fails only in production, mid-task (an outcome event's decision
"not_computed" once met a column of eight), so the widths are checked here against the vocabulary itself.
"""

import pytest
from django.core.management import call_command

from analytics.models import AnalysisBatch, AnalysisRequest
from audit.models import AccessEvent
from chaincode import validation, vocabulary
from records.models import Record

LONGEST_MODEL_PURPOSE = vocabulary.MODEL_PURPOSE_PREFIX + "f" * (
    vocabulary.CODE_MAX_LENGTH - len(vocabulary.MODEL_PURPOSE_PREFIX)
)

COLUMNS_AND_THEIR_CODES = [
    (AccessEvent, "kind", vocabulary.EVENT_KINDS),
    (AccessEvent, "decision", vocabulary.DECISION_LABELS),
    (AccessEvent, "reason", vocabulary.REASON_LABELS),
    (AccessEvent, "category", vocabulary.CATEGORIES),
    (AccessEvent, "purpose", {**vocabulary.PURPOSES, **vocabulary.AUDIT_PURPOSES, LONGEST_MODEL_PURPOSE: ""}),
    (AccessEvent, "outcome", vocabulary.OUTCOMES),
    (AccessEvent, "outcome_reason", vocabulary.NOT_COMPUTED_REASONS),
    (AnalysisRequest, "purpose", {**vocabulary.PURPOSES, LONGEST_MODEL_PURPOSE: ""}),
    (AnalysisBatch, "outcome", vocabulary.OUTCOMES),
    (AnalysisBatch, "outcome_reason", vocabulary.NOT_COMPUTED_REASONS),
    (Record, "category", vocabulary.CATEGORIES),
]


@pytest.mark.parametrize(
    ("model", "field", "codes"),
    COLUMNS_AND_THEIR_CODES,
    ids=[f"{model.__name__}.{field}" for model, field, _ in COLUMNS_AND_THEIR_CODES],
)
def test_every_code_fits_its_column(model, field, codes):
    width = model._meta.get_field(field).max_length
    too_long = sorted(code for code in codes if len(code) > width)
    assert not too_long, f"{model.__name__}.{field} holds {width} characters; these codes are longer: {too_long}"


def test_the_longest_purpose_a_model_may_name_is_one_the_ledger_takes_and_one_character_more_is_not():
    assert validation.purpose(LONGEST_MODEL_PURPOSE, "purpose") == LONGEST_MODEL_PURPOSE
    with pytest.raises(validation.InvalidArgument):
        validation.purpose(LONGEST_MODEL_PURPOSE + "f", "purpose")
    assert vocabulary.is_model_purpose(LONGEST_MODEL_PURPOSE)
    assert not vocabulary.is_model_purpose(LONGEST_MODEL_PURPOSE + "f")


@pytest.mark.django_db
def test_the_models_and_their_migrations_agree(capsys):
    # A change to a model (a column widened, say) without its migration would leave the database as it was.
    try:
        call_command("makemigrations", "--check", "--dry-run", verbosity=1)
    except SystemExit:
        pytest.fail(f"models changed without a migration:\n{capsys.readouterr().out}")
