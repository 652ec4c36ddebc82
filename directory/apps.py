from django.apps import AppConfig


class DirectoryConfig(AppConfig):
    name = "directory"
    verbose_name = "Directory and enrolment"
    default_auto_field = "django.db.models.BigAutoField"
