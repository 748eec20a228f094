"""`QueueWorker`: the one background-thread skeleton the server's queues share (scorer, shadow, prediction log)."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Generic, TypeVar

Item = TypeVar("Item")  # what producers queue
Work = TypeVar("Work")  # what the thread takes at once: one item, or a batch of them


class QueueWorker(Generic[Item, Work]):
    """A daemon thread that works through a queue it shares with producers under one condition.

    A subclass says how to take the next unit of work (`_take`, called with the lock held once there is work
    or a stop: one item, a batch, or None to end the thread) and how to do it (`_handle`, outside the lock).
    Producers queue under `self._cond` with their own admission rule (503, dropping and counting), then
    `_put`. A failed unit is kept in `last_error` (for /health) and never ends the thread.
    """

    idle_wait: float | None = None  # seconds the thread sleeps before looking at the queue unwoken (None: until woken)

    def __init__(self, name: str) -> None:
        self.last_error: str | None = None
        self._queue: deque[Item] = deque()
        self._busy = False  # a unit is taken and not yet done: `drain` waits for it too
        self._stopped = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the thread to end after the unit in hand (what `_take` does with the rest is the subclass's)."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until the queue is empty and no unit is in hand; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._queue or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def _put(self, item: Item, wake: bool = True) -> None:
        """Queue one item; call with `self._cond` held. With `wake`, all waiters are woken (the thread and any
        `drain`); without, a thread with an `idle_wait` finds it within that time (waking a thread costs the
        producer a lock hand-over, which a busy server pays on every answer)."""
        self._queue.append(item)
        if wake:
            self._cond.notify_all()

    def _setup_thread(self) -> None:
        """Runs first in the worker's own thread (per-thread settings such as OpenMP's limit)."""

    def _take(self) -> Work | None:
        raise NotImplementedError

    def _handle(self, work: Work) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        self._setup_thread()
        while True:
            with self._cond:
                while not self._queue and not self._stopped:
                    self._cond.wait(self.idle_wait)
                work = self._take()
                if work is None:
                    return
                self._busy = True
            try:
                self._handle(work)
            except Exception as exc:  # one failed unit must not end the thread; /health shows the last failure
                self.last_error = f"{type(exc).__name__}: {exc}"
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
