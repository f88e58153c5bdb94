"""passScanned webhooks: live scans only, signed, retried, bounded, and the webhook faults."""

from __future__ import annotations

import json
import re
import socket
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import msgspec
import pytest
from click.testing import CliRunner

from bridge.passentry.models import ScanResource
from passentry_simulator import Faults, SimulatorProcess, SimulatorServer
from passentry_simulator.command import simulate
from passentry_simulator.webhooks import WebhookConfig
from tests.unit.simulator.receiver import Receiver, wait_until

Make = Callable[..., SimulatorServer]
MakeReceiver = Callable[..., Receiver]
ClientFor = Callable[..., httpx.Client]
SECRET = "whsec-test-1"
# Quick retries keep the tests short; the logic is the same as with the 0.5 s default.
FAST = {"secret": SECRET, "retry_base_s": 0.02, "retry_cap_s": 0.2}


def _server(make_server: Make, receiver: Receiver, faults: Faults | None = None, **kw: Any) -> Any:
    hooks = WebhookConfig(url=receiver.url, **{**FAST, **kw.pop("hooks", {})})
    return make_server(webhooks=hooks, faults=faults, **kw)


def _generate(server: SimulatorServer, n: int) -> list[str]:
    resp = httpx.post(f"{server.url}/_sim/scans/generate", params={"n": n})
    ids: list[str] = resp.json()["ids"]
    return ids


def _settled(server: SimulatorServer, events: int) -> Callable[[], bool]:
    """Every event admitted and finished: delivered, dropped, refused or given up."""

    def check() -> bool:
        t = server.sim.webhooks.totals()
        return t["events"] >= events and t["pending"] == 0 and t["inFlight"] == 0

    return check


def _outcomes(server: SimulatorServer) -> dict[str, list[str]]:
    (only,) = httpx.get(f"{server.url}/_sim/webhooks/scans").json().values()
    return dict(only)


def test_live_scans_are_delivered_signed_and_the_backlog_is_not(
    make_server: Make, make_receiver: MakeReceiver, client_for: ClientFor
) -> None:
    receiver = make_receiver(SECRET)
    server = _server(make_server, receiver, backlog=30)
    client = client_for(server)
    live = _generate(server, 5)
    reader = server.store.world.readers[0]
    pass_ = next(p for p in server.store.world.passes if p.status == "active")
    posted = client.post(
        "/api/v1/scans",
        json={"scan": {"readerId": reader.id, "passId": pass_.id, "scanType": "nfc"}},
    )
    logged = client.post(
        "/api/v1/scans/log",
        json={"scan": {"readerId": reader.id, "scanType": "barcode", "status": "successful",
                       "scanValue": "QR-1"}},
    )  # fmt: skip
    live += [posted.json()["scanInfo"]["scanId"], logged.json()["scanInfo"]["scanId"]]
    live += [s.id for s in server.store.generate(2)]  # from this thread, not the server's

    got = receiver.wait_for(lambda r: len(r) >= 9)
    wait_until(_settled(server, 9), what="all nine events settled")
    assert sorted(r.scan_id for r in got) == sorted(live)
    assert all(r.valid and r.status == 200 for r in got)
    assert all(re.fullmatch(r"[0-9a-f]{64}", r.signature) for r in got)
    assert len({r.event_id for r in got}) == 9
    totals = httpx.get(f"{server.url}/_sim/stats").json()["webhooks"]
    assert (totals["events"], totals["attempted"], totals["delivered"]) == (9, 9, 9)
    assert sorted(_outcomes(server)["delivered"]) == sorted(live)
    assert _outcomes(server)["retried"] == []  # every one at its first attempt


def test_included_scan_and_pass_are_those_the_scans_list_serves(
    make_server: Make, make_receiver: MakeReceiver, client_for: ClientFor
) -> None:
    receiver = make_receiver(SECRET)
    server = _server(make_server, receiver)
    client = client_for(server)
    n = 100
    _generate(server, n)
    got = receiver.wait_for(lambda r: len(r) >= n)
    page = client.get("/api/v1/scans", params={"perPage": n}).json()
    listed = {d["id"]: d for d in page["data"]}
    included = {(i["type"], i["id"]): i for i in page["included"]}
    by_id = {s.id: s for s in server.store.all_scans()}
    stamp = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
    without_pass = 0
    for r in got:
        event = r.event
        data, inc = event["data"], event["included"]
        assert set(event) == {"data", "included"}
        assert (data["type"], data["attributes"]["webhookType"]) == ("webhook", "passScanned")
        assert stamp.fullmatch(data["attributes"]["timeStamp"])
        rel = data["relationships"]
        scan = inc[0]
        # The very bytes the list serves, so either path yields the same record.
        assert by_id[scan["id"]].json in r.body
        assert scan == listed[scan["id"]]
        assert msgspec.convert(scan, ScanResource).id == rel["scan"]["data"]["id"]
        assert rel["reader"]["data"] == {"id": scan["relationships"]["reader"]["data"]["id"],
                                         "type": "reader"}  # fmt: skip
        reader = inc[-1]
        assert set(reader["attributes"]) == {"name", "readerType"}
        full_reader = included[("reader", reader["id"])]["attributes"]
        assert reader["attributes"] == {k: full_reader[k] for k in ("name", "readerType")}
        if rel["pass"]["data"] is None:
            without_pass += 1
            assert [i["type"] for i in inc] == ["scan", "reader"]
        else:
            assert [i["type"] for i in inc] == ["scan", "pass", "reader"]
            assert inc[1]["id"] == rel["pass"]["data"]["id"]
            assert inc[1] == included[("pass", inc[1]["id"])]
    assert without_pass > 0  # the seed makes some externally logged scans without a pass


@pytest.mark.parametrize(
    ("fmt", "shape"),
    [
        ("hex", r"[0-9a-f]{64}"),
        ("base64", r"[A-Za-z0-9+/]{43}="),
        ("prefixed-hex", r"sha256=[0-9a-f]{64}"),
    ],
)
def test_signature_formats(
    make_server: Make, make_receiver: MakeReceiver, fmt: str, shape: str
) -> None:
    receiver = make_receiver(SECRET, fmt)
    server = _server(make_server, receiver, hooks={"signature_format": fmt})
    _generate(server, 3)
    got = receiver.wait_for(lambda r: len(r) >= 3)
    assert all(r.valid and re.fullmatch(shape, r.signature) for r in got)


def test_non_2xx_is_retried_with_growing_backoff_until_delivered(
    make_server: Make, make_receiver: MakeReceiver
) -> None:
    receiver = make_receiver(SECRET, answer=lambda event, nth: 500 if nth <= 2 else 200)
    server = _server(make_server, receiver, hooks={"retry_base_s": 0.1})
    ids = _generate(server, 3)
    receiver.wait_for(lambda r: sum(x.status == 200 for x in r) >= 3)
    wait_until(_settled(server, 3))
    got = receiver.received
    assert Counter(r.scan_id for r in got) == dict.fromkeys(ids, 3)
    for scan_id in ids:
        times = [r.at for r in got if r.scan_id == scan_id]
        # Retry n waits between half and all of 0.1 * 2^(n-1) s.
        assert times[1] - times[0] >= 0.05 - 0.01
        assert times[2] - times[1] >= 0.1 - 0.01
    totals = server.sim.webhooks.totals()
    assert (totals["attempted"], totals["retried"], totals["delivered"]) == (9, 6, 3)
    assert totals["gaveUp"] == 0
    outcomes = _outcomes(server)
    assert sorted(outcomes["delivered"]) == sorted(ids)
    # Each failed its first attempt: named once among the retried, however many retries.
    assert sorted(outcomes["retried"]) == sorted(ids)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize(
    ("hooks", "attempts"),
    [
        ({"max_attempts": 3}, 3),  # stops at the attempt count
        ({"max_attempts": 100, "max_age_s": 0.3}, None),  # stops at the age
    ],
)
def test_unreachable_receiver_is_retried_then_given_up(
    make_server: Make, hooks: dict[str, Any], attempts: int | None
) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/hooks"
    server = make_server(webhooks=WebhookConfig(url=url, **{**FAST, **hooks}))
    ids = _generate(server, 2)
    wait_until(_settled(server, 2), what="both events given up")
    totals = server.sim.webhooks.totals()
    assert (totals["delivered"], totals["gaveUp"]) == (0, 2)
    if attempts is not None:
        assert totals["attempted"] == 2 * attempts
    else:
        assert 2 * 2 <= totals["attempted"] < 2 * 100
    assert totals["retried"] == totals["attempted"] - 2
    assert sorted(_outcomes(server)["gaveUp"]) == sorted(ids)
    assert sorted(_outcomes(server)["retried"]) == sorted(ids)


def _faulty_run(
    make_server: Make, make_receiver: MakeReceiver, n: int
) -> tuple[list[str], list[Any], dict[str, list[str]], dict[str, int]]:
    faults = Faults(webhook_drop_rate=0.25, webhook_duplicate_rate=0.25)
    receiver = make_receiver(SECRET)
    server = _server(make_server, receiver, faults, seed=77)
    ids = _generate(server, n)
    wait_until(_settled(server, n), what="every event settled")
    return ids, receiver.received, _outcomes(server), server.sim.webhooks.totals()


def test_drop_and_duplicate_faults_repeat_with_the_seed(
    make_server: Make, make_receiver: MakeReceiver
) -> None:
    n = 60
    ids, got, outcomes, totals = _faulty_run(make_server, make_receiver, n)
    dropped = set(outcomes["droppedByFault"])
    arrivals = Counter(r.scan_id for r in got)
    assert 0 < len(dropped) < n
    assert dropped.isdisjoint(arrivals)
    assert set(arrivals) == set(ids) - dropped == set(outcomes["delivered"])
    twice = {scan_id for scan_id, count in arrivals.items() if count == 2}
    assert 0 < len(twice) == totals["duplicated"]
    assert set(arrivals.values()) == {1, 2}
    for scan_id in twice:  # a redelivery: same event id, body and signature
        first, second = (r for r in got if r.scan_id == scan_id)
        assert (first.body, first.signature) == (second.body, second.signature)
    assert totals["droppedByFault"] == len(dropped)
    assert totals["delivered"] == len(got) == n - len(dropped) + len(twice)

    # The same seed drops and duplicates the same scans (by creation order) again.
    ids2, got2, outcomes2, _ = _faulty_run(make_server, make_receiver, n)
    arrivals2 = Counter(r.scan_id for r in got2)
    assert {ids2.index(i) for i in outcomes2["droppedByFault"]} == {ids.index(i) for i in dropped}
    assert {ids2.index(i) for i, c in arrivals2.items() if c == 2} == {ids.index(i) for i in twice}


def test_delay_reorders_without_losing_events(
    make_server: Make, make_receiver: MakeReceiver
) -> None:
    receiver = make_receiver(SECRET)
    server = _server(make_server, receiver, Faults(webhook_delay_ms=400))
    ids = _generate(server, 30)
    got = receiver.wait_for(lambda r: len(r) >= 30)
    order = [r.scan_id for r in got]
    assert sorted(order) == sorted(ids)
    assert order != ids


def test_bad_signature_spoils_only_the_first_attempt(
    make_server: Make, make_receiver: MakeReceiver
) -> None:
    receiver = make_receiver(SECRET)
    server = _server(make_server, receiver, Faults(webhook_bad_signature_rate=1.0))
    ids = _generate(server, 4)
    receiver.wait_for(lambda r: sum(x.valid for x in r) >= 4)
    wait_until(_settled(server, 4))
    for scan_id in ids:
        attempts = [r for r in receiver.received if r.scan_id == scan_id]
        assert [(r.valid, r.status) for r in attempts] == [(False, 401), (True, 200)]
        assert attempts[0].body == attempts[1].body
    totals = server.sim.webhooks.totals()
    assert (totals["badSignatures"], totals["retried"], totals["delivered"]) == (4, 4, 4)
    assert httpx.get(f"{server.url}/_sim/stats").json()["faultsFired"]["webhook_bad_signature"] == 4


def test_a_stuck_receiver_fills_a_bounded_outbox_and_the_rest_is_counted(
    make_server: Make, make_receiver: MakeReceiver
) -> None:
    receiver = make_receiver(SECRET)
    receiver.hold()
    server = _server(make_server, receiver, hooks={"queue_size": 5, "concurrency": 1})
    ids = _generate(server, 20)
    sender = server.sim.webhooks
    wait_until(lambda: sender.totals()["events"] == 20, what="all 20 admitted")
    totals = sender.totals()
    assert totals["pending"] + totals["inFlight"] == 5
    assert totals["queueFull"] == 15
    assert _outcomes(server)["queueFull"] == ids[5:]
    receiver.release()
    wait_until(_settled(server, 20), what="the five held deliveries")
    assert sorted(r.scan_id for r in receiver.received) == sorted(ids[:5])
    assert sorted(_outcomes(server)["delivered"]) == sorted(ids[:5])


def test_a_late_scan_is_announced_when_created_not_when_listed(
    make_server: Make, make_receiver: MakeReceiver, client_for: ClientFor
) -> None:
    receiver = make_receiver(SECRET)
    server = _server(make_server, receiver, Faults(late_rate=1.0, late_s=60))
    (scan_id,) = _generate(server, 1)
    (got,) = receiver.wait_for(lambda r: len(r) >= 1)
    assert got.scan_id == scan_id
    assert client_for(server).get("/api/v1/scans").json()["data"] == []


def test_webhook_faults_change_at_run_time(make_server: Make, make_receiver: MakeReceiver) -> None:
    receiver = make_receiver(SECRET)
    server = _server(make_server, receiver)
    put = httpx.put(f"{server.url}/_sim/faults", json={"webhook_drop_rate": 1.0})
    assert put.json()["webhook_drop_rate"] == 1.0
    dropped = _generate(server, 3)
    wait_until(_settled(server, 3))
    assert httpx.put(f"{server.url}/_sim/faults", json={"webhook_delay_ms": -1}).status_code == 400
    httpx.put(f"{server.url}/_sim/faults", json={"webhook_drop_rate": 0.0})
    sent = _generate(server, 2)
    got = receiver.wait_for(lambda r: len(r) >= 2)
    assert sorted(r.scan_id for r in got) == sorted(sent)
    assert _outcomes(server)["droppedByFault"] == dropped


def test_admin_view(make_server: Make, make_receiver: MakeReceiver) -> None:
    receiver = make_receiver(SECRET)
    server = _server(make_server, receiver, hooks={"signature_format": "base64"})
    receiver.fmt = "base64"
    _generate(server, 2)
    receiver.wait_for(lambda r: len(r) >= 2)
    view = httpx.get(f"{server.url}/_sim/webhooks").json()
    assert view["settings"]["signatureFormat"] == "base64"
    (sub,) = view["subscriptions"]
    assert (sub["url"], sub["scopeType"], sub["subscribedEvents"]) == (
        receiver.url,
        "organisation",
        ["passScanned"],
    )
    assert "secretKey" not in json.dumps(view)
    assert sub["stats"]["delivered"] == view["totals"]["delivered"] == 2


def test_command_line_delivers_live_traffic(make_receiver: MakeReceiver) -> None:
    receiver = make_receiver(SECRET, "prefixed-hex")
    args = ["--webhook-url", receiver.url, "--webhook-secret", SECRET, "--backlog", "10"]
    args += ["--webhook-signature-format", "prefixed-hex", "--rate", "40", "--duration", "0.5"]
    args += ["--seed", "9", "--webhook-duplicate-rate", "0.5"]
    with SimulatorProcess(*args) as sim:
        wait_until(
            lambda: httpx.get(f"{sim.url}/_sim/stats").json()["scans"]["total"] == 30,
            what="the 20 live scans",
        )
        got = receiver.wait_for(lambda r: len({x.scan_id for x in r}) >= 20)
        backlog = {row["id"] for row in httpx.get(f"{sim.url}/_sim/scans").json()[:10]}
        assert all(r.valid for r in got)
        assert backlog.isdisjoint(r.scan_id for r in got)
        assert httpx.get(f"{sim.url}/_sim/faults").json()["webhook_duplicate_rate"] == 0.5


def test_command_line_generates_the_secret_into_a_file(
    make_receiver: MakeReceiver, tmp_path: Any
) -> None:
    secret_file = tmp_path / "webhook.secret"
    # The receiver learns the secret once the simulator has written it.
    receiver = make_receiver("")
    args = ["--webhook-url", receiver.url, "--webhook-secret-file", str(secret_file)]
    args += ["--rate", "20", "--duration", "0.5", "--seed", "9"]
    with SimulatorProcess(*args):
        wait_until(secret_file.exists, what="the secret file")
        secret = secret_file.read_text().strip()
        receiver.secret = secret
        assert re.fullmatch(r"[0-9a-f]{64}", secret)
        assert secret_file.stat().st_mode & 0o777 == 0o600
        got = receiver.wait_for(lambda r: any(x.valid for x in r))
        assert any(r.valid for r in got)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--webhook-url", "http://127.0.0.1:9/x"], "go together"),
        (["--webhook-secret", "s", "--webhook-secret-file", "f"], "not both"),
        (["--webhook-secret", "s"], "go together"),
        (["--webhook-url", "ftp://host/x", "--webhook-secret", "s"], "absolute http(s) URL"),
        (["--webhook-url", "http://h/x", "--webhook-secret", ""], "must not be empty"),
        (["--webhook-signature-format", "hexx"], "hexx"),
        (["--webhook-drop-rate", "1.5"], "1.5"),
    ],
)
def test_command_line_refuses_bad_webhook_options(args: list[str], message: str) -> None:
    result = CliRunner().invoke(simulate, args)
    assert result.exit_code == 2
    assert message in result.output
