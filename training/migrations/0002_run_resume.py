"""A training run keeps its federation's result, its attempts and when it was last taken (resuming after the ledger
or a worker was lost)."""

from django.db import migrations, models

FIELDS: dict[str, models.Field] = {
    "attempts": models.PositiveIntegerField(default=0, help_text="times the ledger did not answer and the run waited"),
    "claimed_at": models.DateTimeField(help_text="when a worker last took it (queued -> running)", null=True),
    "outcome": models.JSONField(
        default=dict,
        help_text="the federation's result, kept before the lineage is written so that a run the ledger interrupted"
        " there resumes without training again: {weights, bias, metrics, round_hashes} (model parameters only)",
    ),
}


class Migration(migrations.Migration):
    dependencies = [("training", "0001_initial")]

    operations = [migrations.AddField(model_name="trainingrun", name=name, field=field) for name, field in FIELDS.items()]
