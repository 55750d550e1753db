"""LoadingCache: loads once, forgets on change, and never keeps a load that raced with a change."""

import asyncio

from homeserver.storage.cache import LoadingCache


async def test_loads_once_and_reloads_after_forget():
    cache: LoadingCache[str, int] = LoadingCache(10)
    loads = []

    async def load(key: str) -> int:
        loads.append(key)
        return len(loads)

    assert await cache.get("a", load) == 1
    assert await cache.get("a", load) == 1
    cache.forget(["a"])
    assert await cache.get("a", load) == 2
    await cache.get("b", load)
    cache.forget()  # anyone's
    assert await cache.get("b", load) == 4 and loads == ["a", "a", "b", "b"]


async def test_a_load_that_raced_with_a_change_is_not_kept():
    cache: LoadingCache[str, str] = LoadingCache(10)
    reading = asyncio.Event()
    release = asyncio.Event()
    value = "old"

    async def slow_load(key: str) -> str:
        read = value  # read before the change commits...
        reading.set()
        await release.wait()
        return read

    pending = asyncio.create_task(cache.get("k", slow_load))
    await reading.wait()
    value = "new"
    cache.forget(["k"])  # ...and the change lands while the load is on its way
    release.set()
    assert await pending == "old"

    async def load(key: str) -> str:
        return value

    assert await cache.get("k", load) == "new"
