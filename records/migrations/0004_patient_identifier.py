from django.db import migrations, models
from django.db.models.deletion import CASCADE


def identifiers_of_existing_patients(apps, schema_editor):
    """A patient ingested before is known by the identifier that made its pseudonym (the first it was sent with)."""
    Patient = apps.get_model("records", "Patient")
    PatientIdentifier = apps.get_model("records", "PatientIdentifier")
    identifiers = [PatientIdentifier(patient_id=pk, pseudonym=p) for pk, p in Patient.objects.values_list("pk", "pseudonym")]
    PatientIdentifier.objects.bulk_create(identifiers, batch_size=1000)


class Migration(migrations.Migration):
    """The table of every patient's identifiers (keyed hashes), filled with those of the patients ingested so far."""

    dependencies = [('records', '0003_ingest_run')]
    operations = [
        migrations.CreateModel(name='PatientIdentifier', fields=[('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')), ('pseudonym', models.CharField(help_text='hex HMAC-SHA256 of system|value', max_length=64, unique=True)), ('patient', models.ForeignKey(on_delete=CASCADE, related_name='identifiers', to='records.patient'))], options={'ordering': ['patient', 'pseudonym']}),
        migrations.RunPython(identifiers_of_existing_patients, migrations.RunPython.noop),
    ]
