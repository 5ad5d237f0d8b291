import os
import sys

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "syncsite.settings")
try:
    settings.INSTALLED_APPS  # noqa: B018 - a bad environment variable fails here, in one line
except ImproperlyConfigured as exc:
    print(f"syncsite: configuration error: {exc}", file=sys.stderr, flush=True)
    raise SystemExit(1) from None
application = get_wsgi_application()
