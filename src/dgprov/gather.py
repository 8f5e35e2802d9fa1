"""``gather_or_cancel``: ``asyncio.gather`` for work that is pointless once one part failed;
``cancel_and_wait`` for stopping such work.

Plain ``gather`` raises the first failure and leaves the other tasks running. For the readers
of a 1,000-page user list that means the rest of the list is still fetched after page 3 failed,
and in the long-lived broker each failed load leaves its readers behind while the next caller
starts a new listing. (``asyncio.TaskGroup`` does this too, but only from Python 3.11.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")


async def gather_or_cancel(*work: Awaitable[T]) -> list[T]:
    """Every result in order; on the first failure the others are cancelled and awaited, then
    that failure is raised."""
    tasks = [asyncio.ensure_future(part) for part in work]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        await cancel_and_wait(*tasks)
        raise


async def cancel_and_wait(*tasks: asyncio.Future[Any]) -> None:
    """Cancel ``tasks`` and wait until they have ended, whatever they end with: nothing of them
    runs on after the caller has moved on (to closing the clients they use, say)."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
