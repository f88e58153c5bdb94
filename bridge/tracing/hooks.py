"""Where the bridge's code meets tracing: three hooks, and the default that does nothing.

- :meth:`Tracing.page`: a polled page's request (``bridge.passentry.client``), a root span
  whose context its scans' records continue;
- :meth:`Tracing.webhook`: a webhook request (``bridge.webhook.receiver``), a server span
  continuing the caller's ``traceparent``; its context goes into the inbox record;
- :meth:`Tracing.publish`: one Kafka transaction (``bridge.pipeline``): a "create" span per
  record, its context in the record's headers, and a "send" span linking to them.

:class:`Tracing` itself is tracing off, the default: each hook is one call per page, request
or transaction, never per scan, and OpenTelemetry is not even imported. With tracing off the
receiver still carries a caller's valid ``traceparent`` into the inbox, so that an owner
with tracing on continues it. ``bridge.tracing.otel`` is tracing on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

from bridge.tracecontext import TraceHeaders

if TYPE_CHECKING:
    from bridge.kafka.producer import Sink
    from bridge.kafka.records import OutRecord
    from bridge.passentry.pages import DecodedPage, Listed

__all__ = ["NO_TRACING", "PageSpan", "Tracing", "WebhookSpan"]


class PageSpan(Protocol):
    """A polled page's request, from before its first attempt until it is decoded."""

    def __enter__(self) -> PageSpan: ...

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    def fetched(self, url: str, page: DecodedPage) -> None:
        """The page arrived: its scans' records continue this span's context."""


class WebhookSpan(Protocol):
    """A verified webhook request, until it is answered."""

    # The context the inbox record carries: this span's, or the caller's as it came.
    headers: TraceHeaders | None

    def __enter__(self) -> WebhookSpan: ...

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    def answered(self, outcome: str, status: int) -> None: ...


class _NoPage:
    def __enter__(self) -> _NoPage:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    def fetched(self, url: str, page: DecodedPage) -> None:
        return None


class _Carried:
    """Tracing off: the caller's context passes through to the inbox untouched."""

    __slots__ = ("headers",)

    def __init__(self, headers: TraceHeaders | None) -> None:
        self.headers = headers

    def __enter__(self) -> _Carried:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    def answered(self, outcome: str, status: int) -> None:
        return None


_NO_PAGE = _NoPage()


class Tracing:
    """Tracing off."""

    active = False

    def page(self) -> PageSpan:
        return _NO_PAGE

    def webhook(
        self, headers: Mapping[str, str], path: str, remote: str | None, started_ns: int
    ) -> WebhookSpan:
        return _Carried(TraceHeaders.from_http(headers))

    def publish(
        self,
        sink: Sink,
        records: list[OutRecord],
        items: Sequence[Listed],
        checkpoint: OutRecord,
        timeout_s: float,
    ) -> dict[str, int]:
        """Send ``records`` in one transaction. The first ``len(items)`` records are the
        items' own, in order (``RecordBuilder.scans``); the rest (dead letters) follow."""
        return sink.send(records, checkpoint, timeout_s)

    def shutdown(self) -> None:
        """Export what is buffered; nothing to do when off."""


NO_TRACING = Tracing()
