"""The Django project. Its Celery app is created when Django starts (HealthPlatformConfig.ready), not on
import of this package: the compute worker imports the Django-free modules kept here
(celery_config, filesystem_broker) and must not create the custodian's app, which loads Django."""
