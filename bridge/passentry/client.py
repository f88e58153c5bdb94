"""The PassEntry API client: httpx (its transport, ``bridge.passentry.http``), a request
budget, and tenacity retries.

``classify`` is the one place that decides what an HTTP outcome means. Transport errors,
408, 429 and 5xx are retriable; 401 and 403 mean the token is wrong; any other 4xx is our
bug or a bad filter, and is fatal. Retries use full-jitter exponential backoff, never wait
less than the server's retry-after, and give up after ``retry_deadline_s``: the pipeline
then keeps its cursor where it was and polls again later, so nothing is skipped.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import quote

import httpx
import msgspec

from bridge import __version__
from bridge.backoff import Backoff
from bridge.errors import (
    ApiAuthError,
    ApiRequestError,
    ApiUnavailableError,
    MalformedPageError,
    RetriableError,
)
from bridge.ops.metrics import Metrics, status_class
from bridge.passentry.http import ApiHttp
from bridge.passentry.models import (
    PassDocument,
    PassResource,
    ScanDocument,
    WebhookSubscription,
    WebhookSubscriptionDocument,
    WebhookSubscriptionList,
)
from bridge.passentry.pages import (
    DecodedPage,
    IncludedMemo,
    PageBody,
    add_included,
    add_scan,
    decode_page,
)
from bridge.passentry.ratelimit import RequestBudget
from bridge.tracing.hooks import NO_TRACING, Tracing

if TYPE_CHECKING:
    from tenacity import RetryCallState

__all__ = ["PassEntryClient", "SettingNames", "classify"]

log = logging.getLogger(__name__)
T = TypeVar("T")

_pass_doc = msgspec.json.Decoder(PassDocument)
_scan_doc = msgspec.json.Decoder(ScanDocument)
# Each endpoint the client calls (a metric label) and its path, as errors name it.
_PATHS = {
    "scans": "/api/v1/scans",
    "scan": "/api/v1/scans/{id}",
    "pass": "/api/v1/passes/{id}",
    "webhook_subscriptions": "/api/v1/webhook-subscriptions",
}
_subscription_doc = msgspec.json.Decoder(WebhookSubscriptionDocument)
_subscription_list = msgspec.json.Decoder(WebhookSubscriptionList)
# Retry waits: from 0.25 s, jittered, up to 20 s; never sooner than the server asks.
_BACKOFF_S = (0.25, 20.0)
# A lookup is worth making only soon: a webhook batch waits for it. The wait is about two
# starts at the default budget of 9 a second.
_LOOKUP_WAIT_S = 0.25
_LOOKUP_TIMEOUT = httpx.Timeout(1.0)
# The process's decoded passes and readers, which every client shares: sources that split
# one API between them (by reader, say) list the same passes, and each kept its own copy of
# each one (a full memo is about 6 MiB) and decoded it once more. The same bytes decode to
# the same resource whichever source fetched them, and a source only ever looks up bytes
# it was sent, so nothing passes from one source to another. Each open client adds its
# share to the bound, so sources whose passes differ (other accounts) keep as many each as
# they did with a memo of their own.
_INCLUDED = IncludedMemo(size=0)
_INCLUDED_PER_CLIENT = 4096


@dataclass(frozen=True, slots=True)
class SettingNames:
    """How the user spells the settings an answer points at, for one source: the shared
    variables, or the source's keys in the YAML file (``sources[eu].api_token``)."""

    url: str = "PASSENTRY_API_URL"
    token: str = "PASSENTRY_API_TOKEN (or PASSENTRY_API_TOKEN_FILE)"  # noqa: S105 (a name)


def classify(
    response: httpx.Response, endpoint: str, method: str = "GET",
    names: SettingNames = SettingNames(),
) -> None:  # fmt: skip
    """Raise the error that says how to handle a non-2xx answer; return on 2xx."""
    code = response.status_code
    if 200 <= code < 300:
        return
    where = f"{method} {endpoint} answered {code}"
    if code in (401, 403):
        raise ApiAuthError(
            f"{where}: PassEntry refused the API token; check {names.token} and that the key"
            " may list scans"
        )
    if code in (408, 429) or code >= 500:
        reason = "rate_limited" if code == 429 else "server_error"
        raise ApiUnavailableError(where, reason=reason, retry_after=_retry_after(response.headers))
    detail = _error_summary(response)
    path = response.request.url.path
    base = path[: path.find(endpoint)] if endpoint in path else ""
    if code == 404 and base.strip("/"):
        # PASSENTRY_API_URL=https://api.passentry.com/api/v1 asks for /api/v1/api/v1/scans.
        detail += (
            f"; {names.url} has a path ({base}): give the API's base URL alone, e.g."
            " https://api.passentry.com (the bridge adds /api/v1/...)"
        )
    raise ApiRequestError(f"{where}: {detail}", status=code)


def _retry_after(headers: Mapping[str, str]) -> float | None:
    for name in ("x-rate-limit-retry-after", "retry-after"):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value))
        except ValueError:
            continue  # an HTTP-date Retry-After: fall back to our own backoff
    return None


def _error_summary(response: httpx.Response) -> str:
    # PassEntry's documented error body is {"errors": [str, ...]}; never echo a whole body.
    try:
        errors = msgspec.json.decode(response.content, type=dict[str, list[str]])["errors"]
        return "; ".join(e[:200] for e in errors[:3])
    except (msgspec.DecodeError, msgspec.ValidationError, KeyError):
        return f"{len(response.content)} byte {response.headers.get('content-type', '')} body"


@dataclass(frozen=True, slots=True)
class FetchedPage:
    page: DecodedPage
    url: str


class PassEntryClient:
    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        metrics: Metrics,
        budget: RequestBudget,
        timeout_s: float = 10.0,
        retry_deadline_s: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        tracing: Tracing = NO_TRACING,
        names: SettingNames = SettingNames(),
    ) -> None:
        """``names``: how errors name the URL and token settings of this source."""
        self._names = names
        self._base = base_url.rstrip("/")
        self._metrics = metrics
        self._tracing = tracing
        self._budget = budget
        # Passes and readers repeat across pages: each distinct one is decoded once.
        self._included = _INCLUDED
        _INCLUDED.resize(_INCLUDED_PER_CLIENT)
        # Given back on close, or when the client is collected unclosed (a source whose
        # start-up failed after making it), so that the bound never outgrows the clients.
        self._release = weakref.finalize(self, _INCLUDED.resize, -_INCLUDED_PER_CLIENT)
        self._deadline = retry_deadline_s
        self._sleep = sleep
        # Measures the retry deadline; tests pass a clock that their ``sleep`` moves on.
        self._clock = clock
        self._http = ApiHttp(
            base_url,
            {
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                "User-Agent": f"passentry-bridge/{__version__}",
            },
            httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
            transport=transport,
        )

    def close(self) -> None:
        self._release()
        self._http.close()

    def __enter__(self) -> PassEntryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def list_scans(self, params: Mapping[str, str]) -> FetchedPage:
        """One page of ``GET /api/v1/scans``, decoded, with retries."""

        def attempt() -> FetchedPage:
            response = self._send(_PATHS["scans"], "scans", params)
            try:
                page = decode_page(response.content, self._included)
            except MalformedPageError as exc:
                reason = "html" if b"<html" in response.content[:512].lower() else "undecodable"
                self._metrics.malformed_pages.labels(reason).inc()
                raise MalformedPageError(
                    f"GET /api/v1/scans page {params.get('page')}: {exc}"
                ) from None
            self._metrics.pages_fetched.inc()
            return FetchedPage(page, str(response.url))

        # A polled page is where its scans' traces start (tracing on).
        with self._tracing.page() as span:
            fetched = self._retrying(attempt, "scans")
            span.fetched(fetched.url, fetched.page)
        return fetched

    def get_scan(self, scan_id: str) -> DecodedPage | None:
        """``GET /api/v1/scans/{id}`` as a page of one scan with its pass and reader (a scan
        that does not decode is in ``rejected``); ``None`` when PassEntry says 404."""
        return self._retrying(lambda: self._scan(scan_id), "scan")

    def look_up_scan(self, scan_id: str) -> DecodedPage | None:
        """:meth:`get_scan` for a caller that must not be held up long: only if the budget
        has a request free within ``_LOOKUP_WAIT_S``, one try, within ``_LOOKUP_TIMEOUT``.
        ``None`` when it had none, or PassEntry says 404; a failure raises at once."""
        waited = self._budget.acquire_within(_LOOKUP_WAIT_S)
        if waited is None:
            return None
        if waited:
            self._metrics.rate_limit_wait_seconds.inc(waited)
        return self._scan(scan_id, paced=False, timeout=_LOOKUP_TIMEOUT)

    def _scan(
        self, scan_id: str, *, paced: bool = True, timeout: httpx.Timeout | None = None
    ) -> DecodedPage | None:
        path = _PATHS["scan"].format(id=quote(scan_id, safe=""))
        try:
            response = self._send(path, "scan", {}, paced=paced, timeout=timeout)
        except ApiRequestError as exc:
            if exc.status == 404:
                return None
            raise
        try:
            document = _scan_doc.decode(response.content)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self._metrics.malformed_pages.labels("undecodable").inc()
            raise MalformedPageError(f"GET {_PATHS['scan']}: {exc}") from None
        page = DecodedPage()
        add_scan(document.data, page, PageBody(raws=[document.data]), 0)
        for raw in document.included or ():
            add_included(raw, page)
        return page

    def get_pass(self, pass_id: str) -> PassResource | None:
        """``GET /api/v1/passes/{id}``; ``None`` when PassEntry says 404."""

        def attempt() -> PassResource | None:
            path = _PATHS["pass"].format(id=quote(pass_id, safe=""))
            try:
                response = self._send(path, "pass", {})
            except ApiRequestError as exc:
                if exc.status == 404:
                    return None
                raise
            try:
                return _pass_doc.decode(response.content).data
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                self._metrics.malformed_pages.labels("undecodable").inc()
                raise MalformedPageError(f"GET {_PATHS['pass']}: {exc}") from None

        return self._retrying(attempt, "pass")

    def create_webhook_subscription(
        self, url: str, events: list[str], entity_id: str | None = None
    ) -> WebhookSubscription:
        """``POST /api/v1/webhook-subscriptions``; its answer holds the secret, once. Not
        retried: a retry after a lost answer would create a second subscription."""
        fields: dict[str, object] = {"url": url, "enabled": True, "subscribedEvents": events}
        if entity_id is not None:
            fields["entityId"] = entity_id
        path = _PATHS["webhook_subscriptions"]
        response = self._send(
            path, "webhook_subscriptions", {}, body={"webhookSubscription": fields}
        )
        try:
            return _subscription_doc.decode(response.content).data
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise MalformedPageError(f"POST {path}: {exc}") from None

    def update_webhook_subscription(
        self, sub_id: str, *, enabled: bool | None = None, events: list[str] | None = None
    ) -> WebhookSubscription:
        """``PATCH /api/v1/webhook-subscriptions/{id}``: its state or events (a URL and a
        scope cannot change)."""
        fields: dict[str, object] = {}
        if enabled is not None:
            fields["enabled"] = enabled
        if events is not None:
            fields["subscribedEvents"] = events
        return self._subscription(
            "PATCH", f"{_PATHS['webhook_subscriptions']}/{quote(sub_id, safe='')}",
            {"webhookSubscription": fields},
        )  # fmt: skip

    def rotate_webhook_secret(self, sub_id: str) -> WebhookSubscription:
        """``PATCH .../{id}/rotate-secret``: a new secret, in the answer only; the old one
        stops being valid at once."""
        path = f"{_PATHS['webhook_subscriptions']}/{quote(sub_id, safe='')}/rotate-secret"
        return self._subscription("PATCH", path, {})

    def delete_webhook_subscription(self, sub_id: str) -> None:
        """``DELETE /api/v1/webhook-subscriptions/{id}`` (the guide says subscriptions can
        be deleted; this path is REST's, not confirmed by PassEntry's reference)."""
        path = f"{_PATHS['webhook_subscriptions']}/{quote(sub_id, safe='')}"
        self._send(path, "webhook_subscriptions", {}, method="DELETE")

    def _subscription(self, method: str, path: str, body: object) -> WebhookSubscription:
        # Not retried: a change must not be sent twice on a lost answer (a second rotation
        # would invalidate the secret the first one handed out).
        response = self._send(path, "webhook_subscriptions", {}, body=body, method=method)
        try:
            return _subscription_doc.decode(response.content).data
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise MalformedPageError(f"{method} {path}: {exc}") from None

    def webhook_subscriptions(self) -> list[WebhookSubscription]:
        """Every subscription the token can see, all pages."""
        path, found, page = _PATHS["webhook_subscriptions"], [], 1
        while True:
            params = {"perPage": "100", "page": str(page)}

            def attempt(params: dict[str, str] = params) -> WebhookSubscriptionList:
                response = self._send(path, "webhook_subscriptions", params)
                try:
                    return _subscription_list.decode(response.content)
                except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                    raise MalformedPageError(f"GET {path}: {exc}") from None

            listed = self._retrying(attempt, "webhook_subscriptions")
            found.extend(listed.data)
            meta = listed.meta
            if not listed.data or meta is None or (meta.total_pages or 1) <= page:
                return found
            page += 1

    def _send(
        self,
        path: str,
        endpoint: str,
        params: Mapping[str, str],
        body: object | None = None,
        method: str | None = None,
        *,
        paced: bool = True,
        timeout: httpx.Timeout | None = None,
    ) -> httpx.Response:
        """One request (``body`` as JSON when given: a POST unless ``method`` says
        otherwise), inside the budget (``paced``: waiting for it here; else the caller took
        its start already)."""
        method = method or ("GET" if body is None else "POST")
        if paced:
            waited = self._budget.acquire()
            if waited:
                self._metrics.rate_limit_wait_seconds.inc(waited)
        started = time.perf_counter()
        try:
            if body is None:
                response = self._http.request(method, path, params, timeout=timeout)
            else:
                response = self._http.request(
                    method,
                    path,
                    params,
                    content=msgspec.json.encode(body),
                    headers={"Content-Type": "application/json"},
                )
        except httpx.TimeoutException as exc:
            self._count(endpoint, None, started)
            raise ApiUnavailableError(
                f"{method} {self._base}{path}: timed out ({type(exc).__name__})",
                reason="timeout",
            ) from exc
        except httpx.TransportError as exc:
            self._count(endpoint, None, started)
            raise ApiUnavailableError(
                f"{method} {self._base}{path}: {type(exc).__name__}: {exc}"
                f" (check {self._names.url})",
                reason="connection",
            ) from exc
        self._count(endpoint, response.status_code, started)
        headers = response.headers
        self._budget.observe(
            headers.get("x-rate-limit-remaining"), headers.get("x-rate-limit-reset"), time.time()
        )
        if response.status_code == 429:
            self._metrics.api_rate_limited.labels(endpoint).inc()
            retry_after = _retry_after(headers)
            self._budget.pause(retry_after if retry_after is not None else 1.0)
            self._budget.throttled()
        else:
            self._budget.answered()
        if response.status_code in (401, 403):
            self._metrics.api_auth_failures.inc()
        # Name the endpoint, not the pass id, in the error.
        classify(response, _PATHS[endpoint], method, self._names)
        return response

    def _count(self, endpoint: str, status: int | None, started: float) -> None:
        self._metrics.api_request_duration.labels(endpoint).observe(time.perf_counter() - started)
        self._metrics.api_requests.labels(endpoint, status_class(status)).inc()

    def _retrying(self, attempt: Callable[[], T], endpoint: str) -> T:
        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome is not None else None
            server = exc.retry_after if isinstance(exc, ApiUnavailableError) else None
            return max(backoff.next(), server or 0.0)

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome is not None else None
            reason = exc.retry_reason if isinstance(exc, RetriableError) else "other"
            self._metrics.api_retries.labels(endpoint, reason).inc()
            log.warning(
                "retrying PassEntry request",
                extra={"endpoint": endpoint, "attempt": state.attempt_number, "error": str(exc)},
            )

        started = self._clock()

        def out_of_time(state: RetryCallState) -> bool:
            # tenacity's stop_after_delay, on our clock: stop once the deadline has passed.
            return self._clock() - started >= self._deadline

        # Most calls succeed at once: tenacity (tens of microseconds a call) is only set up
        # once the first attempt failed, and is handed that failure as its first attempt,
        # so the waits, the deadline and the log are as if it had run it.
        try:
            return attempt()
        except RetriableError as exc:
            first: RetriableError | None = exc

        # Imported here, at the first failure: most runs never retry, and every command that
        # starts pays for what it imports.
        from tenacity import Retrying, retry_if_exception_type

        backoff = Backoff(*_BACKOFF_S)

        def again() -> T:
            nonlocal first
            if first is not None:
                failed, first = first, None
                raise failed
            return attempt()

        retrying = Retrying(
            retry=retry_if_exception_type(RetriableError),
            wait=wait,
            stop=out_of_time,
            sleep=self._sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        return retrying(again)
