from __future__ import annotations

import gc
import json
from typing import Any

import httpx
import pytest

from bridge.errors import ApiAuthError, ApiRequestError, ApiUnavailableError
from bridge.ops.metrics import Metrics
from bridge.passentry.client import PassEntryClient
from bridge.passentry.ratelimit import RequestBudget
from tests.support import FakeClock, sample


class Script:
    """Answers requests from a list, in order, and records what was asked."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def make(
    script: Script, metrics: Metrics, sleeps: list[float], deadline: float = 60
) -> PassEntryClient:
    return PassEntryClient(
        "https://api.example.test",
        "tok-secret",
        metrics=metrics,
        budget=RequestBudget(1000, sleep=sleeps.append),
        retry_deadline_s=deadline,
        transport=httpx.MockTransport(script),
        sleep=sleeps.append,
    )


def test_sends_bearer_token_and_decodes(example_page_bytes: bytes, metrics: Metrics) -> None:
    script = Script(httpx.Response(200, content=example_page_bytes))
    fetched = make(script, metrics, []).list_scans(
        {"page": "1", "createdAfter": "2025-01-01T00:00:00.000Z"}
    )
    assert len(fetched.page.scans) == 3
    req = script.requests[0]
    assert req.headers["authorization"] == "Bearer tok-secret"
    assert req.url.params["createdAfter"] == "2025-01-01T00:00:00.000Z"
    assert (
        sample(metrics, "passentry_bridge_api_requests_total", endpoint="scans", status_class="2xx")
        == 1
    )


def test_clients_share_the_passes_and_readers_they_decoded(
    example_page_bytes: bytes, metrics: Metrics
) -> None:
    """Two sources of one process listing the same passes hold one copy of each."""
    clients = [
        make(Script(httpx.Response(200, content=example_page_bytes)), metrics, []) for _ in range(2)
    ]
    pages = [client.list_scans({"page": "1"}).page for client in clients]
    assert pages[0].passes
    assert pages[0].readers
    for pass_id, found in pages[0].passes.items():
        assert pages[1].passes[pass_id] is found
    for reader_id, found in pages[0].readers.items():
        assert pages[1].readers[reader_id] is found


def test_each_open_client_adds_its_share_to_the_shared_memo(metrics: Metrics) -> None:
    """Sources whose passes differ keep as many each as with a memo of their own; a client
    closed, or dropped without closing, gives its share back."""
    from bridge.passentry import client as client_module

    memo = client_module._INCLUDED
    share = client_module._INCLUDED_PER_CLIENT
    gc.collect()  # other tests' clients, dropped unclosed
    before = memo.bound
    one, two = make(Script(), metrics, []), make(Script(), metrics, [])
    assert memo.bound == before + 2 * share
    one.close()
    assert memo.bound == before + share
    del two
    gc.collect()
    assert memo.bound == before


def test_retries_429_5xx_timeouts_resets_and_malformed_then_succeeds(
    example_page_bytes: bytes, metrics: Metrics
) -> None:
    script = Script(
        httpx.Response(
            429, headers={"x-rate-limit-retry-after": "0.7"}, json={"errors": ["Too Many Requests"]}
        ),
        httpx.Response(503, text="busy"),
        httpx.ReadTimeout("slow"),
        httpx.RemoteProtocolError("peer closed connection"),
        httpx.Response(200, content=example_page_bytes[:50]),  # truncated body
        httpx.Response(200, text="<html><body>Bad gateway</body></html>"),
        httpx.Response(200, content=example_page_bytes),
    )
    sleeps: list[float] = []
    fetched = make(script, metrics, sleeps).list_scans({"page": "1"})
    assert len(fetched.page.scans) == 3
    assert len(script.requests) == 7
    # The first backoff honours the server's retry-after.
    assert sleeps[0] >= 0.7
    assert sample(metrics, "passentry_bridge_api_rate_limited_total", endpoint="scans") == 1
    for reason, count in [
        ("rate_limited", 1),
        ("server_error", 1),
        ("timeout", 1),
        ("connection", 1),
        ("malformed", 2),
    ]:
        assert (
            sample(metrics, "passentry_bridge_api_retries_total", endpoint="scans", reason=reason)
            == count
        ), reason
    assert sample(metrics, "passentry_bridge_malformed_pages_total", reason="html") == 1


def test_standard_retry_after_header_is_read(example_page_bytes: bytes, metrics: Metrics) -> None:
    script = Script(
        httpx.Response(503, headers={"Retry-After": "3"}),
        httpx.Response(200, content=example_page_bytes),
    )
    sleeps: list[float] = []
    make(script, metrics, sleeps).list_scans({})
    assert max(sleeps) >= 3


@pytest.mark.parametrize("code", [401, 403])
def test_auth_failure_is_fatal_at_once_and_never_shows_the_token(
    code: int, metrics: Metrics
) -> None:
    script = Script(httpx.Response(code, json={"errors": ["Unauthorized"]}))
    with pytest.raises(ApiAuthError) as info:
        make(script, metrics, []).list_scans({})
    assert len(script.requests) == 1
    assert "PASSENTRY_API_TOKEN" in str(info.value)
    assert "tok-secret" not in str(info.value)
    assert sample(metrics, "passentry_bridge_api_auth_failures_total") == 1


def test_other_4xx_is_fatal_with_the_api_error_text(metrics: Metrics) -> None:
    script = Script(httpx.Response(422, json={"errors": ["createdAfter is not a date"]}))
    with pytest.raises(ApiRequestError, match="createdAfter is not a date"):
        make(script, metrics, []).list_scans({})


def test_gives_up_after_the_deadline_with_the_last_error(metrics: Metrics) -> None:
    script = Script(*[httpx.Response(502) for _ in range(500)])
    clock = FakeClock()  # only the backoff sleeps move it
    client = PassEntryClient(
        "https://api.example.test",
        "t",
        metrics=metrics,
        budget=RequestBudget(1000, clock=clock, sleep=clock.advance),
        retry_deadline_s=60,
        transport=httpx.MockTransport(script),
        sleep=clock.sleep,
        clock=clock,
    )
    with pytest.raises(ApiUnavailableError, match="502"):
        client.list_scans({})
    waits = clock.sleeps
    assert 1 < len(script.requests) < 500
    assert len(script.requests) == len(waits) + 1  # one more attempt after every backoff
    # It retried while inside the deadline, and stopped on the first failure past it.
    assert sum(waits[:-1]) < 60 <= sum(waits)
    assert sample(
        metrics, "passentry_bridge_api_retries_total", endpoint="scans", reason="server_error"
    ) == len(waits)


def test_missing_pass_is_none_on_404(metrics: Metrics) -> None:
    script = Script(
        httpx.Response(404, json={"errors": ["Not Found"]}),
        httpx.Response(
            200,
            content=json.dumps(
                {"data": {"id": "p1", "type": "pass", "attributes": {"status": "active"}}}
            ).encode(),
        ),
    )
    client = make(script, metrics, [])
    assert client.get_pass("nope") is None
    found = client.get_pass("p 1/x")
    assert found is not None
    assert found.attributes.status == "active"
    assert script.requests[1].url.raw_path == b"/api/v1/passes/p%201%2Fx"


def test_one_scan_comes_with_its_pass_and_reader_and_is_none_on_404(
    example_page: dict[str, Any], metrics: Metrics
) -> None:
    scan = example_page["data"][0]
    one = {"data": scan, "included": example_page["included"]}
    script = Script(
        httpx.Response(200, content=json.dumps(one).encode()),
        httpx.Response(404, json={"errors": ["Not Found"]}),
    )
    client = make(script, metrics, [])
    page = client.get_scan(scan["id"])
    assert page is not None
    assert [s.resource.id for s in page.scans] == [scan["id"]]
    assert not page.rejected
    assert scan["relationships"]["pass"]["data"]["id"] in page.passes
    assert "south-gate-1" in page.readers
    assert client.get_scan("gone/1") is None
    assert script.requests[0].url.raw_path == f"/api/v1/scans/{scan['id']}".encode()
    assert script.requests[1].url.raw_path == b"/api/v1/scans/gone%2F1"
    assert sample(metrics, "passentry_bridge_api_requests_total", endpoint="scan",
                  status_class="4xx") == 1  # fmt: skip


def test_budget_pauses_everyone_when_the_server_says_none_remain() -> None:
    now = [100.0]
    sleeps: list[float] = []

    def sleep(s: float) -> None:
        sleeps.append(s)
        now[0] += s

    budget = RequestBudget(10, clock=lambda: now[0], sleep=sleep)
    assert budget.acquire() == 0
    budget.acquire()
    assert sleeps == [pytest.approx(0.1)]
    budget.observe("0", str(1_000 + 0.5), now_unix=1_000)
    waited = budget.acquire()
    assert waited == pytest.approx(0.5)
    budget.observe("5", None, now_unix=1_000)  # slots left: no pause
    assert budget.acquire() == pytest.approx(0.1)


def test_budget_slows_down_after_a_429_and_recovers() -> None:
    budget = RequestBudget(10, sleep=lambda s: None)
    budget.throttled()
    budget.throttled()
    assert budget.per_second == pytest.approx(10 / 1.21)
    for _ in range(100):
        budget.answered()
    assert budget.per_second == pytest.approx(10)


def test_a_429_lowers_the_clients_pace(example_page_bytes: bytes, metrics: Metrics) -> None:
    script = Script(
        httpx.Response(429, headers={"x-rate-limit-retry-after": "0"}),
        httpx.Response(200, content=example_page_bytes),
    )
    budget = RequestBudget(10, sleep=lambda s: None)
    client = PassEntryClient(
        "https://api.example.test",
        "t",
        metrics=metrics,
        budget=budget,
        transport=httpx.MockTransport(script),
        sleep=lambda s: None,
    )
    client.list_scans({})
    assert budget.per_second < 10
