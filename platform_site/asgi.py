import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "platform_site.settings")
django.setup(set_prefix=False)  # as django.core.asgi.get_asgi_application does

# Django's handler, except that raw binary PUT bodies (uploads) are streamed to the view, not spooled first.
from platform_site.streaming import StreamingASGIHandler  # noqa: E402

django_asgi_app = StreamingASGIHandler()

# A party's client waiting for the next round is held here, not on Django's one thread (federation/waiting.py);
# predict calls by API token are answered ahead of Django's middleware (models_market/fastpath.py).
from federation.waiting import FederationStateWait  # noqa: E402
from models_market.fastpath import PredictFastPath  # noqa: E402

http_app = FederationStateWait(PredictFastPath(django_asgi_app))

# Imported after Django is set up: the routing modules import models.
from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from platform_site.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
