"""Each record's newest anchored version found from an index alone (records.models.RecordVersion's Meta)."""

from django.db import migrations, models

ANCHORED = models.Index(fields=["anchor_state", "record", "version"], name="record_version_anchored")


class Migration(migrations.Migration):
    dependencies = [("records", "0007_patient_data_keys_and_erasure")]
    operations = [migrations.AddIndex(model_name="recordversion", index=ANCHORED)]
