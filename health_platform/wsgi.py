import os

from django.core.wsgi import get_wsgi_application

from health_platform.request_limits import ChunkedBodyRead

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "health_platform.settings")
# A body sent without a length (chunked) is read and given one before Django sees the request.
application = ChunkedBodyRead(get_wsgi_application())
