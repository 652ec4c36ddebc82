from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("analytics", "0005_trained_models")]

    operations = [
        migrations.AddField(
            model_name="diagnosticmodel", name="since_trained", field=models.JSONField(blank=True, default=dict)
        ),
        migrations.AddField(
            model_name="diagnosticmodel", name="retired_at", field=models.DateTimeField(blank=True, null=True)
        ),
        migrations.AddField(
            model_name="diagnosticmodel", name="retirement", field=models.JSONField(blank=True, default=dict)
        ),
    ]
