from federation.routing import websocket_urlpatterns as federation_patterns
from ledger.routing import websocket_urlpatterns as ledger_patterns
from platform_site.jobs.routing import websocket_urlpatterns as job_patterns

websocket_urlpatterns = [*job_patterns, *ledger_patterns, *federation_patterns]
