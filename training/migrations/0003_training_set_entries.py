import django.db.models.deletion
from django.db import migrations, models

from training.lineage import index_rows


def index_completed_runs(apps, schema_editor):
    """The training-set index of every run completed before it existed, from the run's kept manifest."""
    TrainingRun = apps.get_model("training", "TrainingRun")
    TrainingSetEntry = apps.get_model("training", "TrainingSetEntry")
    for run in TrainingRun.objects.filter(status="completed").only("pk", "manifest").iterator(chunk_size=100):
        rows = [TrainingSetEntry(run_id=run.pk, **row) for row in index_rows(run.manifest)]
        TrainingSetEntry.objects.bulk_create(rows, batch_size=1000, ignore_conflicts=True)


class Migration(migrations.Migration):
    """The index of each completed training run's record versions (a patient's "models my records trained"), filled
    from the manifests of the runs completed so far."""

    dependencies = [
        ("records", "0007_patient_data_keys_and_erasure"),
        ("training", "0002_run_resume"),
    ]

    operations = [
        migrations.CreateModel(
            name="TrainingSetEntry",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("record_version", models.PositiveIntegerField()),
                ("position", models.PositiveIntegerField(help_text="leaf index in the run's overall training-set tree")),
                ("organisation", models.CharField(help_text="org:<slug>: whose custodian offered the record", max_length=80)),
                ("consent_id", models.CharField(help_text="the consent that admitted the record", max_length=128)),
                ("split", models.CharField(help_text="train or validation", max_length=16)),
                ("record", models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="+", to="records.record")),
                ("run", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="entries", to="training.trainingrun")),
            ],
            options={
                "ordering": ["run", "position"],
                "constraints": [
                    models.UniqueConstraint(fields=("run", "position"), name="training_set_entry_position_unique"),
                    models.UniqueConstraint(fields=("run", "record"), name="training_set_entry_record_unique"),
                ],
            },
        ),
        migrations.RunPython(index_completed_runs, migrations.RunPython.noop),
    ]
