from django.db import migrations, models


class Migration(migrations.Migration):
    """The features kept at ingest (sealed) and their salted hash, anchored with the version. Versions stored
    before keep none: an analysis opens their record, as before."""

    dependencies = [('records', '0004_patient_identifier')]
    operations = [
        migrations.AddField(model_name='recordversion', name='features', field=models.BinaryField(blank=True, default=b'', help_text='the model features kept at ingest, sealed (records.features); empty before')),
        migrations.AddField(model_name='recordversion', name='features_sha256', field=models.CharField(blank=True, default='', help_text='salted hash of the features, anchored with the version', max_length=64)),
    ]
