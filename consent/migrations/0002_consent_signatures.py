from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("consent", "0001_initial")]

    operations = [
        migrations.AddField("consent", "grant_signature", models.CharField(blank=True, default="", help_text="SHA-256 of the grant document the patient signed", max_length=64)),
        migrations.AddField("consent", "revoke_signature", models.CharField(blank=True, default="", max_length=64)),
    ]
