from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("analytics", "0006_trained_model_retirement")]

    operations = [
        migrations.AddField(
            model_name="analysisbatch",
            name="access_mirror_pending",
            field=models.BooleanField(
                default=False, help_text="its access events are on the ledger and not yet in the audit mirror"
            ),
        ),
    ]
