"""Connection-level guards: clients that open connections and send nothing, send a request a byte at a time or
stop reading a response cannot hold the server's connections.

uvicorn alone counts an idle socket like a busy one (its `limit_concurrency` then answers 503 to everyone,
/healthz included) and never times out a connection that has not sent a full request. `guarded_protocol`
subclasses uvicorn's h11 protocol with three rules, shared by all connections through a `ConnectionGuard`:

- read deadline: from the moment a connection waits for a request (opened, or its last response sent) the
  whole request -- line, headers, body -- must arrive within `read_timeout_s`; the deadline is not pushed
  back by each byte (so a slow-loris client is cut off too). A partial request gets 408, an idle one is closed.
- write stall: a client that reads nothing of a response for `read_timeout_s` is dropped.
- connection cap: at `max_connections` open sockets a new one closes the longest-idle one (no request in
  progress) first; only when every connection is busy, up to `reserve` more are let in -- requests on those
  meet the busy limit (`hrem.serve.middleware.BusyLimit`, /healthz exempt), so health checks still answer.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

_TIMEOUT_BODY = b"request not received within the time limit\n"
TIMEOUT_RESPONSE = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
                    b"content-length: %d\r\n\r\n%s" % (len(_TIMEOUT_BODY), _TIMEOUT_BODY))


class ConnectionGuard:
    """The open connections of one server, and the limits they share."""

    def __init__(self, max_connections: int, reserve: int, read_timeout_s: float) -> None:
        self.max_connections = max_connections
        self.reserve = reserve
        self.read_timeout_s = read_timeout_s
        self.open: set[GuardedH11Protocol] = set()
        self.closed_idle = 0      # counters for operators and tests: closed to make room / by a deadline
        self.timed_out = 0

    def admit(self, connection: GuardedH11Protocol) -> bool:
        while len(self.open) >= self.max_connections and self._close_longest_idle():
            pass
        if len(self.open) >= self.max_connections + self.reserve:
            return False
        self.open.add(connection)
        return True

    def _close_longest_idle(self) -> bool:
        idle = [c for c in self.open if c.idle]
        if not idle:
            return False
        victim = min(idle, key=lambda c: c.idle_since)
        self.open.discard(victim)   # now: connection_lost comes later, and the loop above must see room
        self.closed_idle += 1
        victim.close_for_room()
        return True

    def discard(self, connection: GuardedH11Protocol) -> None:
        self.open.discard(connection)


class GuardedH11Protocol(H11Protocol):
    guard: ConnectionGuard    # set on the subclass `guarded_protocol` makes

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.idle_since = time.monotonic()
        self._deadline: asyncio.TimerHandle | None = None
        self._stall: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        if not self.guard.admit(self):
            transport.abort()   # beyond the cap and the reserve, every connection busy: refuse at once
            return
        self._arm_deadline()

    @property
    def idle(self) -> bool:
        """No request of this connection is in the app (waiting for one, or still receiving it)."""
        return self.cycle is None or self.cycle.response_complete

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE and self.conn.their_state is not h11.SEND_BODY:
            self._cancel(self._deadline)   # the whole request is in (or the connection is ending)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self.idle_since = time.monotonic()
            self._arm_deadline()        # keep-alive: the next request has the same time to arrive

    def timeout_keep_alive_handler(self) -> None:
        """uvicorn's keep-alive timer: superseded by the read deadline (same job, and it answers 408)."""

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel(self._deadline)
        self._cancel(self._stall)
        self.guard.discard(self)
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        super().pause_writing()
        self._cancel(self._stall)
        self._stall = self.loop.call_later(self.guard.read_timeout_s, self._drop_stalled_reader)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._cancel(self._stall)

    def close_for_room(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()

    def _arm_deadline(self) -> None:
        self._cancel(self._deadline)
        self._deadline = self.loop.call_later(self.guard.read_timeout_s, self._read_timed_out)

    def _read_timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        self.guard.timed_out += 1
        partial = self.idle and bool(self.conn.trailing_data[0])
        if partial:   # a request was started: say why it is dropped (h11 cannot answer a half request)
            self.transport.write(TIMEOUT_RESPONSE)
        self.transport.close()

    def _drop_stalled_reader(self) -> None:
        self._stall = None
        self.guard.timed_out += 1
        self.transport.abort()   # close() would wait for the unread buffer to drain, i.e. forever

    @staticmethod
    def _cancel(handle: asyncio.TimerHandle | None) -> None:
        if handle is not None:
            handle.cancel()


def guarded_protocol(guard: ConnectionGuard) -> type[Any]:
    """A protocol class for `uvicorn.Config(http=...)` whose connections share `guard`."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"guard": guard})
