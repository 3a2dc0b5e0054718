"""Who may use the model, and for how long: the server's slots, deadlines and cancellation.

`running` requests are answered at once (1, or hf's `parallel`); up to `max_queue` more wait,
and any request beyond that is refused at once (503 with Retry-After) instead of piling up.
Every admitted request holds a `Ticket` with a cancel event. The event is set when the
client disconnects, when the request's deadline passes, or when the server shuts down; the
backend checks it between tokens, so the model is free again within a token and the
ticket's slot goes back to the pool.

Generation runs in a thread of its own per request (not the event loop's shared pool):
pieces cross to the event loop through an asyncio queue, and a cancelled request's thread
ends by itself at the backend's next check.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from contextlib import closing
from typing import AsyncIterator

_END = object()


@dataclasses.dataclass(eq=False)
class Ticket:
    deadline: float                      # time.monotonic() after which the request is cancelled
    cancel: threading.Event = dataclasses.field(default_factory=threading.Event)
    why: str | None = None               # "disconnected" | "timeout" | "shutdown", once cancelled
    thread: threading.Thread | None = None

    def stop(self, why: str) -> None:
        if self.why is None:
            self.why = why
        self.cancel.set()


class Slots:
    """At most `running + max_queue` tickets at once; `close()` refuses new ones and cancels the rest."""

    def __init__(self, max_queue: int, request_timeout: float, running: int = 1):
        self.limit = running + max_queue
        self.request_timeout = request_timeout
        self.tickets: set[Ticket] = set()
        self.closed = False
        self.served = 0
        self.refused = 0
        self.finishing: set[threading.Thread] = set()  # threads of tickets given back, ending at their next token
        self._lock = threading.RLock()  # RLock: close() also runs from the SIGTERM handler, on the loop's thread

    def enter(self) -> Ticket | None:
        with self._lock:
            if self.closed or len(self.tickets) >= self.limit:
                self.refused += 1
                return None
            ticket = Ticket(deadline=time.monotonic() + self.request_timeout)
            self.tickets.add(ticket)
            self.served += 1
            return ticket

    def leave(self, ticket: Ticket) -> None:
        """Give the slot back (idempotent); a request that is not finished is cancelled."""
        ticket.cancel.set()
        with self._lock:
            self.tickets.discard(ticket)
            self.finishing = {t for t in self.finishing if t.is_alive()}
            if ticket.thread is not None and ticket.thread.is_alive():
                self.finishing.add(ticket.thread)

    def close(self) -> None:
        with self._lock:
            self.closed = True
            tickets = list(self.tickets)
        for ticket in tickets:
            ticket.stop("shutdown")

    def join(self, timeout: float) -> None:
        """Wait (up to `timeout` s in all) for the generation threads of cancelled requests to end."""
        end = time.monotonic() + timeout
        with self._lock:
            threads = list(self.finishing) + [t.thread for t in self.tickets if t.thread is not None]
        for thread in threads:
            thread.join(max(0.0, end - time.monotonic()))


async def pieces(backend, prompt, params, ticket: Ticket, receive=None) -> AsyncIterator:
    """The backend's stream for one ticket, run in a thread; stops it on disconnect, deadline or shutdown.

    `receive` is the ASGI receive callable: an `http.disconnect` on it cancels the ticket."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()

    def put(item) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # the event loop is gone (server stopped): nobody is listening
            pass

    def work() -> None:
        try:
            with closing(backend.stream(prompt, params, ticket.cancel)) as stream:
                for piece in stream:
                    put(piece)
        except BaseException as exc:  # surfaced in the request's task
            put(exc)
        finally:
            put(_END)

    async def watch() -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                ticket.stop("disconnected")
                put(_END)  # wakes the reader now, whatever the thread is doing
                return

    timer = loop.call_later(max(0.0, ticket.deadline - time.monotonic()), lambda: (ticket.stop("timeout"), put(_END)))
    watcher = asyncio.ensure_future(watch()) if receive is not None else None
    ticket.thread = threading.Thread(target=work, name="subjectlm-request", daemon=True)
    ticket.thread.start()
    try:
        while True:
            item = await queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            if item.finish_reason == "cancelled":  # the caller says why (ticket.why), not as a finish reason
                return
            yield item
    finally:
        ticket.cancel.set()  # the reader left or the answer is done: the thread must not go on
        timer.cancel()
        if watcher is not None:
            watcher.cancel()
