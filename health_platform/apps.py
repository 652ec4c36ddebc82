from django.apps import AppConfig
from django.core.exceptions import ImproperlyConfigured


class HealthPlatformConfig(AppConfig):
    name = "health_platform"
    verbose_name = "health_platform"

    def ready(self) -> None:
        """Refuse to start on a diagnostic model declaration the platform could not run (an unknown purpose or
        category, weights that do not match it): better at start-up than at the first analysis. Then create
        the Celery app, before any task is sent, so that shared_task uses it."""
        from health_platform.model_catalogue import CatalogueError, catalogue_check, catalogue_folder

        try:
            catalogue_check()
        except CatalogueError as error:
            raise ImproperlyConfigured(f"diagnostic models in {catalogue_folder()}: {error}") from None
        import health_platform.celery  # noqa: F401
