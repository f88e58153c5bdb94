"""The ``webhook_latency`` scenario: scan creation to a read_committed consumer at 200 scans/s,
polling alone (1 s interval) against webhooks on, side by side in one run, with the API
requests per second each costs; then webhooks on again while the hostile mix of
``bench/hostile.py`` attacks the receiver (slow clients, a gzip bomb, oversized bodies, a
replay storm, an unsigned flood). Draws the latency distributions to a PNG."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import time
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bench._procs import Child, Simulator, free_port, scrape_metrics
from bench._runs import Context, bridge_child, bridge_executable, fresh_names
from bench.hostile import HostileClients, HostileMix, Target, captured_event, gzip_bomb
from bench.scenarios import Arrivals, Sizes, quantile, say, wait_ready

__all__ = ["webhook_latency"]

RATE = 200
SECRET = "bench-webhook-secret-0123456789abcdef"
# Webhooks need a poll to have seen each reader in full, and the first events race the
# first poll: steady state starts a few seconds after the first finished poll.
_WARMUP_S = 5.0


def webhook_latency(ctx: Context, sizes: Sizes, plot_to: Path | None = None) -> dict[str, Any]:
    duration = sizes.latency_s
    poll = _run(ctx, duration, webhooks=False)
    pushed = _run(ctx, duration, webhooks=True)
    attacked = _run(ctx, duration, webhooks=True, hostile=True)
    baseline: dict[str, Any] = {}
    if ctx.baseline is not None:
        # The baseline's bridge in the same three runs, after this one's.
        baseline = {
            "poll": _summary(_run(ctx, duration, webhooks=False, baseline=True)),
            "webhook": _summary(_run(ctx, duration, webhooks=True, baseline=True)),
            "webhook_hostile": _summary(
                _run(ctx, duration, webhooks=True, hostile=True, baseline=True)
            ),
        }
    result = {
        "rate_per_s": RATE,
        "duration_s": duration,
        "poll": _summary(poll),
        "webhook": _summary(pushed),
        "webhook_hostile": _summary(attacked) | attacked["hostile"],
        "api_requests_per_s": pushed["api_requests_per_s"],
        "poll_only_api_requests_per_s": poll["api_requests_per_s"],
        **({"baseline": baseline} if baseline else {}),
    }
    if plot_to is not None:
        _plot(
            [
                ("poll (1 s)", poll["delays"], "tab:blue"),
                ("webhook", pushed["delays"], "tab:orange"),
                ("webhook, hostile mix", attacked["delays"], "tab:red"),
            ],
            plot_to,
        )
        result["plot"] = str(plot_to)
    return result


def _run(
    ctx: Context, duration: float, *, webhooks: bool, hostile: bool = False,
    baseline: bool = False,
) -> dict[str, Any]:  # fmt: skip
    label = ("webhook-hostile" if hostile else "webhook") if webhooks else "poll"
    program = "baseline" if baseline else "bridge"
    executable = bridge_executable(ctx.baseline) if baseline and ctx.baseline else None
    names = fresh_names(f"wh-latency-{label}")
    topic = names["BRIDGE_SCANS_TOPIC"]
    ctx.kafka.create_topics([topic])
    env = {**names, "PASSENTRY_POLL_INTERVAL_MIN_S": "1", "PASSENTRY_POLL_INTERVAL_MAX_S": "1"}
    sim_args = ["--rate", str(RATE), "--duration", str(duration), "--seed", "5"]
    if webhooks:
        port = free_port()
        source = names["BRIDGE_SOURCE_ID"]
        sim_args += [
            "--webhook-url",
            f"http://127.0.0.1:{port}/webhooks/passentry/{source}",
            "--webhook-secret",
            SECRET,
        ]
        env |= {
            "PASSENTRY_WEBHOOK_SECRET": SECRET,
            "BRIDGE_WEBHOOK_PORT": str(port),
            "BRIDGE_WEBHOOK_TOPIC": f"bench.{source}.inbox",
        }
    say(f"webhook_latency: {RATE} scans/s for {duration:.0f}s, {label}, {program}")
    with (
        Arrivals(ctx.kafka.bootstrap, topic, 6) as arrivals,
        Simulator(sim_args, log_dir=ctx.log_dir, name=f"sim-{label}") as sim,
    ):
        traffic_end = time.monotonic() + duration
        child, port_http = bridge_child(ctx, sim, f"{program}-{label}", env, [], executable)
        with child, contextlib.ExitStack() as attacking:
            ready_ms = wait_ready(ctx, child, port_http)
            steady_ms = ready_ms + int(_WARMUP_S * 1000)
            attack: HostileClients | None = None
            if hostile:
                attack = _attack(ctx, child, port, names["BRIDGE_SOURCE_ID"], port_http)
                attacking.callback(attack.__exit__)
                rss_before, cpu_before = child.rss(), child.cpu()
                # Measured once the attack is in full swing.
                steady_ms = max(steady_ms, int(time.time() * 1000))
            time.sleep(max(0.0, steady_ms / 1000 - time.time()))
            before_by_route, started = _api_requests(sim), time.monotonic()
            rss_peak = child.rss()
            while time.monotonic() < traffic_end:
                time.sleep(min(0.5, max(0.0, traffic_end - time.monotonic())))
                rss_peak = max(rss_peak, child.rss())
            after_by_route, ended = _api_requests(sim), time.monotonic()
            extra: dict[str, Any] = {}
            if attack is not None:
                extra["hostile"] = {
                    "bridge_cpu_s": round(child.cpu() - cpu_before, 2),
                    "rss_before_mb": round(rss_before, 1),
                    "rss_peak_mb": round(rss_peak, 1),
                    "outcomes": attack.stop(),
                }
            before, after = sum(before_by_route.values()), sum(after_by_route.values())
            created = sim.stats()["scans"]["total"]
            deadline = time.monotonic() + 30
            while len(arrivals.delays) < created and time.monotonic() < deadline:
                if not child.alive():
                    raise RuntimeError(f"the bridge exited early: see {child.log_path}")
                time.sleep(0.2)
            published_by_webhook = _published_by_webhook(ctx, port_http)
    delays = [d for stamp, d in arrivals.delays if stamp >= steady_ms]
    return {
        "created": created,
        "received": len(arrivals.delays),
        "delays": delays,
        "api_requests_per_s": round((after - before) / max(ended - started, 1e-9), 2),
        "api_requests_by_route": {
            route: n - before_by_route.get(route, 0)
            for route, n in after_by_route.items()
            if n > before_by_route.get(route, 0)
        },
        "published_by_webhook": published_by_webhook,
        **extra,
    }


def _attack(ctx: Context, child: Child, port: int, source: str, port_http: int) -> HostileClients:
    """The hostile mix against the bridge's receiver, once it is in full swing: its slow
    clients hold their connections, and the request it replays was accepted once."""
    path = f"/webhooks/passentry/{source}"
    captured = captured_event()
    signature = hmac.new(SECRET.encode(), captured, hashlib.sha256).hexdigest()
    answer = ctx.http.post(
        f"http://127.0.0.1:{port}{path}",
        content=captured,
        headers={"X-Webhook-Signature": signature},
        timeout=30,
    )
    if answer.status_code != 200:
        raise RuntimeError(f"the event to replay was refused: {answer.status_code} {answer.text}")
    say("webhook_latency: hostile mix starting (bench/hostile.py)")
    attack = HostileClients(
        Target("127.0.0.1", port, path, captured, signature, gzip_bomb()), HostileMix()
    )
    attack.start()
    deadline = time.monotonic() + 60
    while scrape_metrics(port_http, ctx.http).get("passentry_bridge_webhook_connections", 0) < 300:
        if not child.alive():
            raise RuntimeError(f"the bridge exited under attack: see {child.log_path}")
        if time.monotonic() > deadline:
            raise TimeoutError("the hostile clients did not connect within 60 s")
        time.sleep(0.1)
    return attack


def _api_requests(sim: Simulator) -> dict[str, int]:
    """Requests to PassEntry's API so far (scans, passes, subscriptions), by route."""
    counts: dict[str, int] = sim.stats()["requests"]
    return {route: n for route, n in counts.items() if " /api/" in route}


def _published_by_webhook(ctx: Context, port: int) -> int:
    """Inbox events the bridge published (the counter's ``outcome="published"`` samples)."""
    text = ctx.http.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return int(
        sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "passentry_bridge_webhook_events_total"
            and sample.labels.get("outcome") == "published"
        )
    )


def _summary(run: dict[str, Any]) -> dict[str, Any]:
    delays = run["delays"]
    return {
        "created": run["created"],
        "received": run["received"],
        "missing": max(0, run["created"] - run["received"]),
        "measured": len(delays),
        "p50_s": round(quantile(delays, 0.50), 3),
        "p99_s": round(quantile(delays, 0.99), 3),
        "max_s": round(max(delays, default=float("nan")), 3),
        "api_requests_per_s": run["api_requests_per_s"],
        "published_by_webhook": run["published_by_webhook"],
        "api_requests_by_route": run["api_requests_by_route"],
    }


def _plot(curves: list[tuple[str, list[float], str]], path: Path) -> None:
    """Cumulative distributions, log time axis, with p50 and p99 marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    for name, values, colour in curves:
        ordered = sorted(max(v, 1e-3) for v in values)
        if not ordered:
            continue
        share = [(i + 1) / len(ordered) for i in range(len(ordered))]
        p50, p99 = quantile(ordered, 0.5), quantile(ordered, 0.99)
        label = f"{name}: p50 {p50:.3f} s, p99 {p99:.3f} s"
        ax.step(ordered, share, where="post", color=colour, label=label)
        for q in (p50, p99):
            ax.axvline(q, color=colour, linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("scan creation to read_committed consumer (s)")
    ax.set_ylabel("share of scans")
    ax.set_title(f"passentry-bridge end-to-end latency at {RATE} scans/s")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
