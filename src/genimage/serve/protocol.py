"""Deadlines on reading a request, against slow clients ("slow loris").

uvicorn's HTTP/1.1 protocol (h11) closes a keep-alive connection that stays idle for
``timeout_keep_alive`` seconds, but a client that keeps sending a byte now and then is never
idle: it can hold a connection open for ever by trickling its request's headers or its body
(the attack of R. Hansen's 2009 "Slowloris"; CWE-400). Two deadlines end that:

* **headers** (:func:`read_deadline_protocol`): from the moment a connection opens, and
  again from the end of each response on a kept-alive connection, the next request's headers
  must be complete within ``header_seconds``; otherwise the server answers
  ``408 Request Timeout`` and closes the connection. This is a subclass of uvicorn's
  ``H11Protocol`` (passed as ``uvicorn.Config(http=...)``), the protocol uvicorn uses when
  ``httptools`` is not installed; ``genimage serve`` selects it explicitly;
* **body** (:class:`~genimage.serve.guard.BodyCap`): once the headers are in, the whole body
  must arrive within ``body_seconds``, or the request is answered 408 and the connection
  closed.

Every other connection is served meanwhile (the event loop waits on none of them), so one
slow client costs the server one socket for at most the deadline.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.h11_impl import H11Protocol

_TIMEOUT_RESPONSE = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
                     b"content-length: %d\r\n\r\n%s")


def read_deadline_protocol(header_seconds: float) -> type[H11Protocol]:
    """An ``H11Protocol`` subclass that closes a connection whose request headers are not
    complete ``header_seconds`` after the connection opened or its previous response ended.

    Args:
        header_seconds (float): The deadline in seconds (> 0). It should not be shorter than
            uvicorn's ``timeout_keep_alive`` (5 s by default), which closes idle connections
            first.

    Returns:
        The protocol class, for ``uvicorn.Config(http=...)``.
    """
    if not header_seconds > 0:
        raise ValueError(f"header_seconds must be positive, got {header_seconds!r}")
    message = (b'{"error":"the request headers did not arrive within %g seconds; the connection is closed"}'
               % header_seconds)

    class ReadDeadlineH11Protocol(H11Protocol):
        """uvicorn's h11 protocol with a deadline on each request's headers."""

        _header_timer: asyncio.TimerHandle | None = None
        _awaiting: object = None  # the request cycle that was current when the timer was armed

        def _arm(self) -> None:
            self._disarm()
            self._awaiting = self.cycle
            self._header_timer = self.loop.call_later(header_seconds, self._headers_late)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_late(self) -> None:
            self._header_timer = None
            if self.cycle is self._awaiting and not self.transport.is_closing():  # no new request began
                self.transport.write(_TIMEOUT_RESPONSE % (len(message), message))
                self.transport.close()

        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._header_timer is not None and self.cycle is not self._awaiting:
                self._disarm()  # a request's headers are complete: the body has its own deadline

        def on_response_complete(self) -> None:
            before = self.cycle
            super().on_response_complete()
            if not self.transport.is_closing() and self.cycle is before:  # waiting for the next request
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return ReadDeadlineH11Protocol
