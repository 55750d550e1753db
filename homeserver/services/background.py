"""Background tasks a service starts and must be able to wait for or cancel at stop."""

from __future__ import annotations

import asyncio
from typing import Any, Coroutine


class BackgroundTasks:
    """The admin API's background jobs (room deletes, history purges): started from a
    request, waited for by tests and orderly stops, cancelled when the server stops."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coroutine: Coroutine[Any, Any, Any], name: str | None = None) -> None:
        task = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)  # held: the loop keeps only a weak reference to a task
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def wait_idle(self) -> None:
        """Until every running task has finished."""
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
