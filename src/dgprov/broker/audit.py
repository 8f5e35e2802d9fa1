"""The audit log writer: a bounded queue in front of a slow or stuck log, drained by a thread.

Writing each line from the event loop (``sys.stderr.write`` and ``flush``) stops every
connection while the log's reader is slow: a full pipe to a log collector blocks the write,
and a flood of anonymous requests is a flood of lines. So the loop only queues a line and a
thread writes it. The queue holds at most ``QUEUE_LINES`` lines a caller could have made by
sending junk; beyond that such lines are dropped, counted in
``dgprov_broker_audit_lines_dropped_total`` and in one line that says how many, written as soon
as the log takes lines again (and when the broker stops). A line *kept* (a request for which
Defguard was asked for a token) is never dropped: those are bounded by the per-user rate limit
and by what Defguard issues, not by what anonymous callers send.

A request's answer waits for its own line while the log keeps up (fewer than ``WAIT_BEHIND``
lines ahead of it), at most ``WAIT_SECONDS``: the line is in the log before the caller holds
the answer it describes, and a stuck log delays answers by a second at most, never stops them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections import deque
from collections.abc import Callable
from datetime import datetime, timezone

QUEUE_LINES = 10_000  # droppable lines waiting at once (a few MB)
WAIT_BEHIND = 8
WAIT_SECONDS = 1.0
CLOSE_SECONDS = 5.0


def dropped_line(count: int) -> str:
    return json.dumps(
        {
            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "audit_lines_dropped": count,
        }
    )


class AuditWriter:
    """Lines to ``sink`` from one thread, in the order they were queued."""

    def __init__(
        self,
        sink: Callable[[str], None],
        *,
        queue_lines: int = QUEUE_LINES,
        on_drop: Callable[[], None] = lambda: None,
        wait_behind: int = WAIT_BEHIND,
        wait_seconds: float = WAIT_SECONDS,
    ) -> None:
        self.sink = sink
        self.queue_lines = queue_lines
        self.wait_behind = wait_behind
        self.wait_seconds = wait_seconds
        self.on_drop = on_drop
        self._lines: deque[tuple[str, bool, asyncio.Future[None] | None]] = deque()
        self._droppable = 0  # lines in the queue that are not kept
        self._writing = 0  # 1 while the thread writes a line
        self._dropped = 0  # dropped since the last report line
        self._ready = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def write(self, line: str, *, keep: bool) -> None:
        """Queue ``line`` (in the event loop); wait for it as the module says."""
        waiter = self.submit(line, keep=keep)
        if waiter is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(waiter), self.wait_seconds)

    def submit(self, line: str, *, keep: bool) -> asyncio.Future[None] | None:
        """Queue ``line``; a future done once it is written if the caller should wait for it,
        else None (also when it was dropped)."""
        if self._thread is None:  # started here, in the process that serves (after a fork)
            self._loop = asyncio.get_running_loop()
            self._thread = threading.Thread(
                target=self._drain, name="dgprov-broker-audit", daemon=True
            )
            self._thread.start()
        assert self._loop is not None
        with self._ready:
            if not keep and self._droppable >= self.queue_lines:
                self._dropped += 1
                self.on_drop()
                return None
            waiter = self._loop.create_future() if self._behind() < self.wait_behind else None
            self._lines.append((line, keep, waiter))
            self._droppable += not keep
            self._ready.notify()
        return waiter

    def _behind(self) -> int:
        """Lines a new one would wait behind: those queued and the one being written."""
        return len(self._lines) + self._writing

    def close(self, timeout: float = CLOSE_SECONDS) -> bool:
        """Write what is queued (and the count of dropped lines), waiting up to ``timeout``;
        True when everything was written. Blocking: call it from a thread."""
        with self._ready:
            self._closing = True
            self._ready.notify()
        if self._thread is None:
            self._report_dropped()
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _drain(self) -> None:
        while True:
            with self._ready:
                while not self._lines and not self._closing:
                    self._ready.wait()
                if not self._lines:
                    break
                line, keep, waiter = self._lines.popleft()
                self._droppable -= not keep
                self._writing = 1
            self._write(line)
            with self._ready:
                self._writing = 0
            if waiter is not None:
                self._resolve(waiter)
            self._report_dropped()
        self._report_dropped()

    def _report_dropped(self) -> None:
        with self._ready:
            count, self._dropped = self._dropped, 0
        if count:
            self._write(dropped_line(count))

    def _write(self, line: str) -> None:
        with contextlib.suppress(Exception):  # a closed or broken log: keep serving
            self.sink(line)

    def _resolve(self, waiter: asyncio.Future[None]) -> None:
        def done() -> None:
            if not waiter.done():
                waiter.set_result(None)

        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop has closed
            self._loop.call_soon_threadsafe(done)
