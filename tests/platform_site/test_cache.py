"""The Redis cache keeps one client per connection pool, shared by the process, and still behaves as Django's."""

import threading

from django.conf import settings

from platform_site.cache import RedisCache


def test_one_client_serves_every_call_and_thread_and_values_round_trip():
    cache = RedisCache(settings.REDIS_URL, {"KEY_PREFIX": "test-cache-client"})
    cache.set("k", {"a": [1, 2.5, "x"]}, 30)
    assert cache.get("k") == {"a": [1, 2.5, "x"]}
    assert cache.add("k", "other", 30) is False
    cache.delete("n")
    assert cache.add("n", 0, 30) is True and cache.incr("n", 2) == 2
    clients = {id(cache._cache.get_client(write=True)), id(cache._cache.get_client(write=False))}
    seen = []

    def use() -> None:
        cache.set("t", 1, 30)
        seen.append(id(cache._cache.get_client(write=True)))

    threads = [threading.Thread(target=use) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(clients) == 1 and set(seen) == clients
    cache.delete_many(["k", "n", "t"])
    assert cache.get("k") is None


def test_the_cache_objects_of_many_requests_share_one_pool_and_connection():
    """Under ASGI each request gets its own cache object (the cache handler's connections are context-local):
    twenty requests, one after another, must not open twenty connections to Redis."""
    params = {"KEY_PREFIX": "test-cache-shared"}
    caches = [RedisCache(settings.REDIS_URL, params) for _ in range(20)]
    pool = caches[0]._cache._get_connection_pool(True)
    before = pool._created_connections
    for cache in caches:
        cache.set("shared", 1, 30)
        assert cache.get("shared") == 1
    pools = {id(cache._cache._get_connection_pool(True)) for cache in caches}
    clients = {id(cache._cache.get_client(write=True)) for cache in caches}
    assert len(pools) == 1 and len(clients) == 1
    assert pool._created_connections <= max(before, 1)
    caches[0].delete("shared")
