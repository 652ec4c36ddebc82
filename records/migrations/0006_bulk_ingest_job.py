import uuid

from django.conf import settings
from django.db import migrations, models
from django.db.models.deletion import SET_NULL


class Migration(migrations.Migration):
    """The bulk ingest's jobs: their files' hashes and the slices committed, so that an interrupted ingest resumes."""

    dependencies = [('records', '0005_record_features'), migrations.swappable_dependency(settings.AUTH_USER_MODEL)]
    operations = [
        migrations.CreateModel(name='BulkIngestJob', fields=[
            ('id', models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
            ('files_sha256', models.CharField(max_length=64, unique=True)),
            ('files', models.JSONField(default=list, help_text='[{"sha256", "bytes"}] in the order given')),
            ('created_at', models.DateTimeField(auto_now_add=True)),
            ('updated_at', models.DateTimeField(auto_now=True)),
            ('status', models.CharField(default='running', help_text='running, done or refused', max_length=16)),
            ('refusal_code', models.CharField(blank=True, default='', max_length=64)),
            ('slice_patients', models.PositiveIntegerField()),
            ('slices_total', models.PositiveIntegerField(default=0)),
            ('slices_done', models.PositiveIntegerField(default=0)),
            ('records_new', models.PositiveIntegerField(default=0)),
            ('records_unchanged', models.PositiveIntegerField(default=0)),
            ('patients_refused', models.PositiveIntegerField(default=0)),
            ('refusals', models.JSONField(default=list, help_text='[{"code", "file", "line", "path"}], the first ones')),
            ('actor', models.ForeignKey(blank=True, null=True, on_delete=SET_NULL, to=settings.AUTH_USER_MODEL)),
        ]),
    ]
