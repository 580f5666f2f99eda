"""Production settings: the defaults hardened. Every secret and host must come from the environment."""

import os

from django.core.exceptions import ImproperlyConfigured

from platform_site.settings import *  # noqa: F403
from platform_site.settings import env_bool

DEBUG = False
DEMO_SEED_ALLOWED = env_bool("DEMO_SEED_ALLOWED", False)  # published demo passwords on a real site: no
LEDGER_FAUCET_AMOUNT = int(os.environ.get("LEDGER_FAUCET_AMOUNT", 0))  # no free tokens unless asked for
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if len(SECRET_KEY) < 50:
    raise ImproperlyConfigured("SECRET_KEY must be set to a random string of at least 50 characters")
if not os.environ.get("ALLOWED_HOSTS"):
    raise ImproperlyConfigured("ALLOWED_HOSTS must name the site's hosts")

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", 31536000))
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
WHITENOISE_USE_FINDERS = False
STORAGES = {
    **STORAGES,  # noqa: F405
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
