from django.apps import AppConfig


class HealthPlatformConfig(AppConfig):
    name = "health_platform"
    verbose_name = "health_platform"

    def ready(self) -> None:
        # The Celery app exists before any task is sent, so that shared_task uses it.
        import health_platform.celery  # noqa: F401
