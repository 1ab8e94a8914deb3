"""Concurrent requests gathered into one forward pass.

One image a request leaves a GPU idle: the launch and transfer costs dwarf the arithmetic.
:class:`Batcher` queues the requests' images (a bounded queue: when it is full a request is
refused at once, with 503, instead of waiting without end), and one worker takes the first
waiting request, then whatever else arrives within a short window (or until a batch is
full), runs one forward pass over all their images in a worker thread (the event loop keeps
accepting requests meanwhile) and hands each request its rows.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["Batcher", "Busy"]


class Busy(Exception):
    """The queue is full: the server is at its limit (the request may be retried)."""


class Batcher:
    """Runs ``forward`` ((N, ...) -> (N, ...)) over the images of many requests at once.

    Parameters
    ----------
    forward : callable
        One forward pass over a stacked batch; called in a worker thread, one at a time.
    max_batch : int
        Most images in one pass (a request larger than that runs alone).
    window : float
        Seconds to wait for more requests after the first one arrives.
    max_queue : int
        Most requests waiting; beyond it :meth:`submit` raises :class:`Busy`.
    """

    def __init__(
        self,
        forward: Callable[[np.ndarray], np.ndarray],
        max_batch: int = 256,
        window: float = 0.002,
        max_queue: int = 1024,
    ):
        self.forward = forward
        self.max_batch = max_batch
        self.window = window
        self.max_queue = max_queue
        self.passes = 0  # forward passes run, and the images they held: for the tests
        self.images = 0
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self._carried: Any = None  # a request that did not fit the last pass: the next one's

    async def start(self) -> None:
        self._queue = asyncio.Queue(self.max_queue)
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def submit(self, images: np.ndarray) -> np.ndarray:
        """The forward pass's rows for ``images`` (raises :class:`Busy` when full)."""
        if self._queue is None:
            raise RuntimeError("the batcher is not running (start it in the app's lifespan)")
        future = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait((images, future))
        except asyncio.QueueFull:
            raise Busy(f"the server is busy ({self.max_queue} requests waiting); retry") from None
        return await future

    async def _gather(self) -> list:
        """The first waiting request, and those that arrive within the window, as long as
        they fit in :attr:`max_batch` rows (one that does not opens the next pass)."""
        assert self._queue is not None
        batch = [self._carried if self._carried is not None else await self._queue.get()]
        self._carried = None
        rows = len(batch[0][0])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.window
        while rows < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
            if rows + len(item[0]) > self.max_batch:
                self._carried = item
                break
            batch.append(item)
            rows += len(item[0])
        return batch

    async def _run(self) -> None:
        while True:
            batch = await self._gather()
            live = [(x, f) for x, f in batch if not f.done()]  # a client may have left
            if not live:
                continue
            stacked = np.concatenate([x for x, _ in live])
            try:
                out = await asyncio.to_thread(self.forward, stacked)
            except Exception as exc:  # every waiting request gets the error, none hangs
                for _, f in live:
                    if not f.done():
                        f.set_exception(exc)
                continue
            self.passes += 1
            self.images += len(stacked)
            start = 0
            for x, f in live:
                if not f.done():
                    f.set_result(out[start : start + len(x)])
                start += len(x)
