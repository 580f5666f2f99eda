"""Django's Redis cache, with one connection pool and one redis-py client per server for the whole process.

Django's `RedisCacheClient` keeps its pools on the cache object, and under ASGI every request gets its own cache
object (the cache handler's connections are context-local), so each request opened a new TCP connection to Redis
for its throttles; and `get_client` makes a new `redis.Redis` for every call, which fills its table of about 170
response callbacks (about half a millisecond on this VM). Here the pools and clients are shared by every cache
object of the process with the same servers and options. A client is thread-safe and its pool checks the process
id, so they serve every thread, request and forked worker.
"""

from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient

# (servers, options) -> the pools by server index and the clients by pool, shared by the process.
_SHARED: dict[tuple, tuple[dict, dict]] = {}


class _Client(RedisCacheClient):
    def __init__(self, servers, **options) -> None:
        super().__init__(servers, **options)
        key = (tuple(servers), repr(sorted(options.items())))
        self._pools, self._clients = _SHARED.setdefault(key, ({}, {}))

    def get_client(self, key=None, *, write=False):
        pool = self._get_connection_pool(write)
        client = self._clients.get(id(pool))
        if client is None:
            client = self._clients.setdefault(id(pool), self._client(connection_pool=pool))
        return client


class RedisCache(DjangoRedisCache):
    def __init__(self, server, params) -> None:
        super().__init__(server, params)
        self._class = _Client
