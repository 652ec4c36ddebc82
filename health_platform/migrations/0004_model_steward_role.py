from django.db import migrations

MODEL_STEWARD = "model-steward"


def create_model_steward_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.get_or_create(name=MODEL_STEWARD)


class Migration(migrations.Migration):
    dependencies = [("health_platform", "0003_grantee_status")]
    operations = [
        migrations.RunPython(create_model_steward_group, migrations.RunPython.noop),
    ]
