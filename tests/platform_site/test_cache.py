"""The Redis cache keeps one client per connection pool and still behaves as Django's."""

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
