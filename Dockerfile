# health_platform: one image for the web app, the custodian and compute workers and the chaincode
# service (python -m chaincode.server); docker-compose.yml picks the command. Dependencies come from
# requirements.lock only, checked against its hashes.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HEALTH_PLATFORM_VAR_DIR=/var/lib/health_platform \
    ANALYTICS_BLOB_DIR=/var/lib/health_platform-blobs

WORKDIR /app

COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --shell /usr/sbin/nologin app \
    && mkdir -p /var/lib/health_platform /var/lib/health_platform-blobs \
    && chown app:app /var/lib/health_platform /var/lib/health_platform-blobs

COPY --chown=app:app . .

USER app
EXPOSE 8000 9999

# The web server's configuration is scripts/web.sh's (health_platform/gunicorn_config.py), on all interfaces.
CMD ["gunicorn", "--config", "python:health_platform.gunicorn_config", "health_platform.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "2"]
