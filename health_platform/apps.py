from django.apps import AppConfig


class HealthPlatformConfig(AppConfig):
    name = "health_platform"
    verbose_name = "health_platform"
