"""``passentry-bridge simulate``: run the PassEntry simulator until SIGTERM or SIGINT.

The first and only line on stdout is the base URL (flushed), so a parent process can read
it, which matters with ``--port 0``. Everything else goes to stderr through logging.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import click
from aiohttp import web

from bridge.errors import ListenError
from passentry_simulator.app import Simulator, SimulatorConfig, build_app
from passentry_simulator.faults import Faults
from passentry_simulator.store import WorldConfig
from passentry_simulator.webhooks import SIGNATURE_FORMATS, SignatureFormat, WebhookConfig

__all__ = ["simulate"]

log = logging.getLogger(__name__)

# Beside a bridge on the same machine: its webhook receiver has 8080, /metrics 9108.
DEFAULT_PORT = 8070

_rate = click.FloatRange(0.0, 1.0)
_FAULT_FLAGS = {  # CLI option -> Faults field, where the names differ
    "hang_seconds": "hang_s",
    "late_seconds": "late_s",
    "fault_5xx_rate": "error_5xx_rate",
    "fault_hang_rate": "hang_rate",
    "fault_reset_rate": "reset_rate",
    "fault_malformed_rate": "malformed_rate",
    "fault_truncated_rate": "truncated_rate",
    "fault_html_rate": "html_rate",
    "fault_bad_id_rate": "bad_id_rate",
    "fault_missing_included_rate": "missing_included_rate",
    "fault_late_rate": "late_rate",
}


def _fault_options(func: click.decorators.FC) -> click.decorators.FC:
    for flag in reversed([f for f in _FAULT_FLAGS if f.endswith("_rate")]):
        name = "--" + flag.replace("_", "-")
        func = click.option(name, type=_rate, default=0.0, show_default=True)(func)
    return func


def _webhook_options(func: click.decorators.FC) -> click.decorators.FC:
    """Where and how ``passScanned`` webhooks go; their faults map onto Faults by name."""
    positive = click.FloatRange(0.0, min_open=True)
    options = [
        click.option(
            "--webhook-url",
            help="POST a signed passScanned webhook here for every live scan (the backlog "
            "is not sent). Listed as an organisation subscription. Needs --webhook-secret "
            "or --webhook-secret-file.",
        ),
        click.option(
            "--webhook-secret",
            envvar="SIMULATOR_WEBHOOK_SECRET",
            help="Key of the HMAC-SHA256 in X-Webhook-Signature (UTF-8). Better from the "
            "environment (SIMULATOR_WEBHOOK_SECRET) or --webhook-secret-file: a command "
            "line shows in ps.",
        ),
        click.option(
            "--webhook-secret-file",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Generate the subscription's secret (64 hex characters), as PassEntry does, "
            "and write it here (mode 600) for the bridge: PASSENTRY_WEBHOOK_SECRET_FILE.",
        ),
        click.option(
            "--webhook-signature-format",
            type=click.Choice(SIGNATURE_FORMATS),
            default="hex",
            show_default=True,
            help="X-Webhook-Signature encoding: lowercase hex, base64, or sha256=<hex>. "
            "Applies to every subscription.",
        ),
        click.option(
            "--webhook-drop-rate",
            type=_rate,
            default=0.0,
            show_default=True,
            help="Share of deliveries never sent (counted, ids in /_sim/webhooks/scans).",
        ),
        click.option(
            "--webhook-duplicate-rate",
            type=_rate,
            default=0.0,
            show_default=True,
            help="Share of deliveries sent twice (same body), the copy 50-250 ms later.",
        ),
        click.option(
            "--webhook-delay-ms",
            type=click.FloatRange(0.0),
            default=0.0,
            show_default=True,
            help="Hold each delivery back uniform(0, N) ms before its first attempt; "
            "this reorders events.",
        ),
        click.option(
            "--webhook-bad-signature-rate",
            type=_rate,
            default=0.0,
            show_default=True,
            help="Share of deliveries whose first attempt is signed with a wrong key; "
            "retries are signed correctly, so the event still arrives after a non-2xx.",
        ),
        click.option(
            "--webhook-concurrency",
            type=click.IntRange(1),
            default=4,
            show_default=True,
            help="Deliveries in flight at once.",
        ),
        click.option(
            "--webhook-queue-size",
            type=click.IntRange(1),
            default=10_000,
            show_default=True,
            help="Deliveries held at once (waiting, in flight, backing off); when full, "
            "new ones are dropped and counted as queueFull.",
        ),
        click.option(
            "--webhook-max-attempts",
            type=click.IntRange(1),
            default=8,
            show_default=True,
            help="Attempts per delivery before it is given up. Any non-2xx answer, "
            "timeout or connection error is retried.",
        ),
        click.option(
            "--webhook-max-age",
            "webhook_max_age_s",
            type=positive,
            default=300.0,
            show_default=True,
            help="Seconds after the scan's creation when retrying stops.",
        ),
        click.option(
            "--webhook-retry-base-ms",
            type=positive,
            default=500.0,
            show_default=True,
            help="Retry n waits between half and all of base * 2^(n-1), at most 60 s.",
        ),
        click.option(
            "--webhook-timeout",
            "webhook_timeout_s",
            type=positive,
            default=10.0,
            show_default=True,
            help="Seconds per attempt.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _generated_secret(path: Path) -> str:
    secret = secrets.token_hex(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(secret + "\n")
    except OSError as exc:
        raise click.BadParameter(
            f"cannot write {path}: {exc.strerror}", param_hint="--webhook-secret-file"
        ) from exc
    return secret


def _webhook_config(
    url: str | None,
    secret: str | None,
    secret_file: Path | None,
    signature_format: SignatureFormat,
    *,
    concurrency: int,
    queue_size: int,
    max_attempts: int,
    max_age_s: float,
    retry_base_ms: float,
    timeout_s: float,
) -> WebhookConfig:
    if secret is not None and secret_file is not None:
        raise click.UsageError("give --webhook-secret or --webhook-secret-file, not both")
    if secret_file is not None:
        secret = _generated_secret(secret_file)
    if (url is None) != (secret is None):
        raise click.UsageError(
            "--webhook-url and --webhook-secret (or --webhook-secret-file) go together"
        )
    if secret == "":
        raise click.BadParameter("must not be empty", param_hint="--webhook-secret")
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise click.BadParameter("must be an absolute http(s) URL", param_hint="--webhook-url")
    return WebhookConfig(
        url=url,
        secret=secret,
        signature_format=signature_format,
        concurrency=concurrency,
        queue_size=queue_size,
        max_attempts=max_attempts,
        max_age_s=max_age_s,
        retry_base_s=retry_base_ms / 1000,
        timeout_s=timeout_s,
    )


def _anchor_ms(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter("must be an ISO 8601 date-time", param_hint="--anchor") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


@click.command("simulate")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    help="0 picks a free port. The default is not the bridge's webhook port (8080).",
)
@click.option("--token", default="sim-token", show_default=True, help="Accepted Bearer token.")
@click.option(
    "--backlog",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Historical scans present at start-up.",
)
@click.option(
    "--backlog-span",
    "backlog_span_s",
    type=click.FloatRange(0.001),
    default=3600.0,
    show_default=True,
    help="Seconds of past time the backlog is spread over.",
)
@click.option(
    "--anchor",
    help="ISO 8601 end of the backlog range (default: now). "
    "Fix it together with --seed for identical backlog ids across runs.",
)
@click.option(
    "--rate",
    type=click.FloatRange(0.0),
    default=0.0,
    show_default=True,
    help="Live scans per second; 0 = none.",
)
@click.option(
    "--duration",
    type=click.FloatRange(0.0),
    default=None,
    help="Stop live traffic after this many seconds; the API keeps serving.",
)
@click.option("--readers", type=click.IntRange(1), default=20, show_default=True)
@click.option("--passes", type=click.IntRange(1), default=1000, show_default=True)
@click.option("--seed", type=int, default=None, help="Makes data and fault draws repeatable.")
@click.option("--latency-ms", type=click.FloatRange(0.0), default=0.0, show_default=True)
@click.option("--jitter-ms", type=click.FloatRange(0.0), default=0.0, show_default=True)
@click.option(
    "--rate-limit",
    type=click.IntRange(1),
    default=10,
    show_default=True,
    help="Requests per second per (endpoint, method).",
)
@click.option("--no-rate-limit", is_flag=True, help="Turn the rate limit off.")
@_fault_options
@click.option("--hang-seconds", type=click.FloatRange(0.0), default=30.0, show_default=True)
@click.option("--late-seconds", type=click.FloatRange(0.0), default=5.0, show_default=True)
@click.option(
    "--nodes",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Id-minting API nodes; each scan is minted by a random one.",
)
@click.option(
    "--max-skew-ms",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Each node's clock is off by up to this much.",
)
@click.option(
    "--max-page-size",
    type=click.IntRange(1),
    default=None,
    help="Serve at most this many scans per page, whatever perPage asks.",
)
@_webhook_options
@click.option("--log-level", default="INFO", show_default=True)
def simulate(
    *,
    host: str,
    port: int,
    token: str,
    backlog: int,
    backlog_span_s: float,
    anchor: str | None,
    rate: float,
    duration: float | None,
    readers: int,
    passes: int,
    seed: int | None,
    rate_limit: int,
    no_rate_limit: bool,
    webhook_url: str | None,
    webhook_secret: str | None,
    webhook_secret_file: Path | None,
    webhook_signature_format: SignatureFormat,
    webhook_concurrency: int,
    webhook_queue_size: int,
    webhook_max_attempts: int,
    webhook_max_age_s: float,
    webhook_retry_base_ms: float,
    webhook_timeout_s: float,
    log_level: str,
    **fault_settings: float | int | None,
) -> None:
    """Serve a fake PassEntry scans API, with live traffic, passScanned webhooks and
    injectable faults."""
    # The webhook faults (drop, duplicate, delay, bad signature) are in fault_settings.
    webhooks = _webhook_config(
        webhook_url,
        webhook_secret,
        webhook_secret_file,
        webhook_signature_format,
        concurrency=webhook_concurrency,
        queue_size=webhook_queue_size,
        max_attempts=webhook_max_attempts,
        max_age_s=webhook_max_age_s,
        retry_base_ms=webhook_retry_base_ms,
        timeout_s=webhook_timeout_s,
    )
    logging.basicConfig(
        stream=sys.stderr,
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    world = WorldConfig(
        readers=readers,
        passes=passes,
        seed=seed,
        backlog=backlog,
        backlog_span_s=backlog_span_s,
        anchor_ms=_anchor_ms(anchor),
    )
    config = SimulatorConfig(
        token=token,
        world=world,
        rate=rate,
        duration_s=duration,
        rate_limit=None if no_rate_limit else rate_limit,
        webhooks=webhooks,
    )
    started = time.perf_counter()
    sim = Simulator.create(config, _faults(fault_settings, seed))
    log.info(
        "built %d readers, %d passes, %d backlog scans in %.2fs",
        readers,
        passes,
        backlog,
        time.perf_counter() - started,
    )
    if webhook_url is not None:
        log.info("sending passScanned webhooks for live scans to %s", webhook_url)
    try:
        asyncio.run(_serve(sim, host, port))
    except OSError as exc:
        raise ListenError("--port", host, port, exc) from None


def _faults(settings: dict[str, float | int | None], seed: int | None) -> Faults:
    """Faults from the CLI flags, checked by the same code as ``PUT /_sim/faults``."""
    faults = Faults()
    if seed is not None:
        # Its own stream, so turning a fault on does not change the generated data.
        faults.rng.seed(seed + 1)
    faults.update({_FAULT_FLAGS.get(flag, flag): value for flag, value in settings.items()})
    return faults


async def _serve(sim: Simulator, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(build_app(sim), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        bound_host = f"[{bound_host}]" if ":" in bound_host else bound_host
        url = f"http://{bound_host}:{bound_port}"
        print(url, flush=True)
        log.info("simulator listening on %s", url)
        await stop.wait()
        log.info("stopping")
    finally:
        await runner.cleanup()
