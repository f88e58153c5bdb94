"""Whether Kafka lets the bridge in: what librdkafka reports about credentials and TLS.

librdkafka reports a refused login or an unverifiable certificate only through ``error_cb``
(and its log), once per reconnect, never as a fatal error: the calls that needed the
connection just time out, which looks like a broker that is down. Every client the bridge
makes therefore reports to one :class:`KafkaAccess` (``client_conf`` adds the callback),
which keeps the current streak of such errors. A streak that outlasts a short grace (a new
SCRAM user takes a moment to be valid everywhere) is :meth:`KafkaAccess.failure`: a
:class:`KafkaAuthenticationError` or :class:`KafkaTlsError` whose message names the setting
to fix, never a secret.

librdkafka gives a wrong CA and a host name missing from the certificate the same text, so a
TLS failure is diagnosed with Python's ``ssl`` against the same broker and CA
(``bridge.kafka.tls``), which reports OpenSSL's verification result; ``check`` uses it too.

librdkafka repeats a failing connection's log line on every reconnect. Its log lines and the
errors reported here are logged once per distinct text per minute (``bridge.ops.logs``'s
:class:`Repeats`), with how many were held back.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from confluent_kafka import KafkaError

from bridge.config import KafkaSettings
from bridge.errors import KafkaAccessError, KafkaAuthenticationError, KafkaTlsError
from bridge.kafka.tls import TlsVerdict, tls_verdict
from bridge.ops.logs import RepeatFilter, Repeats

__all__ = ["KafkaAccess", "librdkafka_logger", "refusal_kind"]

log = logging.getLogger(__name__)

# A new SCRAM user is refused for a moment on some brokers; a refusal that lasts longer is
# not going away by itself.
GRACE_S = 10.0
# A streak ends when no such error came for this long (librdkafka's reconnect backoff is at
# most 10 s by default): the problem was fixed, or the client stopped trying.
_STALE_S = 30.0

# librdkafka's additions that change on every repeat of the same error.
_NOISE = re.compile(
    r"\[thrd:[^\]]*\]:\s*"
    r"|\s*\(after \d+ms(?: in state \w+)?(?:, \d+ identical error\(s\) suppressed)?\)"
    r"|\s*\(\d+ identical error\(s\) suppressed\)"
)
# "sasl_ssl://127.0.0.1:9094/bootstrap: ..." or ".../1: ...": the broker the error is about.
_BROKER = re.compile(r"^\w+://(\[[^\]]+\]:\d+|[^/:\s]+:\d+)/")


def _normalised(text: str) -> str:
    return _NOISE.sub("", text).strip()


_LOGGER_LOCK = threading.Lock()


def _librdkafka_line(record: logging.LogRecord) -> tuple[Any, ...]:
    """librdkafka's lines arrive as ``("%s [%s] %s", facility, client name, text)``: the
    same facility and text are a repeat whichever client logs them."""
    args = record.args if isinstance(record.args, tuple) else ()
    text = str(args[2]) if len(args) == 3 else record.getMessage()
    facility = str(args[0]) if len(args) == 3 else ""
    return (record.levelno, facility, _normalised(text))


def librdkafka_logger() -> logging.Logger:
    """The logger librdkafka's lines go to, with repeats held back (installed once)."""
    logger = logging.getLogger("librdkafka")
    with _LOGGER_LOCK:
        if not any(isinstance(f, RepeatFilter) for f in logger.filters):
            logger.addFilter(RepeatFilter(_librdkafka_line))
    return logger


_Kind = Literal["auth", "tls"]
_KINDS: dict[int, _Kind] = {KafkaError._AUTHENTICATION: "auth", KafkaError._SSL: "tls"}
# librdkafka usually reports a failed handshake as _SSL, but when the failure surfaces on the
# socket's read during the handshake it says _TRANSPORT with OpenSSL's own text. A plain
# disconnect (a broker going away mid-handshake) has no such text and stays no refusal.
_TLS_TEXT = re.compile(r"SSL routines|certificate verify failed")


def refusal_kind(err: KafkaError) -> _Kind | None:
    """Whether ``err`` is Kafka refusing the bridge's credentials or TLS (None: neither)."""
    kind = _KINDS.get(err.code())
    if kind is None and err.code() == KafkaError._TRANSPORT and _TLS_TEXT.search(err.str()):
        return "tls"
    return kind


@dataclass(slots=True)
class _Streak:
    """Refusals of one kind, from the first to the latest, and their diagnosis once made."""

    kind: _Kind
    first: float
    last: float
    text: str
    diagnosed: KafkaAccessError | None = None


class KafkaAccess:
    """Collects librdkafka's errors from every client of one set of Kafka settings."""

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        grace_s: float = GRACE_S,
        clock: Callable[[], float] = time.monotonic,
        verdict: Callable[[str, KafkaSettings], TlsVerdict] = tls_verdict,
    ) -> None:
        self._settings = settings
        self._grace = grace_s
        self._clock = clock
        self._verdict = verdict
        self._lock = threading.Lock()
        self._streak: _Streak | None = None
        self._repeats = Repeats()

    @classmethod
    def for_command(cls, settings: KafkaSettings) -> KafkaAccess:
        """A command's: it diagnoses a refusal at once (no grace: a command does not wait a
        refusal out the way a running bridge does)."""
        return cls(settings, grace_s=0.0)

    def conf(self) -> dict[str, Any]:
        """The settings' librdkafka properties, errors coming here (what every client of the
        bridge is made with)."""
        return self.client_conf(self._settings.librdkafka())

    def client_conf(self, conf: dict[str, Any]) -> dict[str, Any]:
        """``conf`` with this collector as its ``error_cb`` and librdkafka's log de-duplicated."""
        return {**conf, "error_cb": self.report, "logger": librdkafka_logger()}

    def report(self, err: KafkaError) -> None:
        """librdkafka's ``error_cb``: runs on whichever thread polls the client."""
        code = err.code()
        text = err.str()
        held = self._repeats.admit((code, _normalised(text)))
        if held is not None:
            extra: dict[str, Any] = {"code": err.name(), "error": text}
            if held:
                extra["repeated"] = held
            log.warning("Kafka client error", extra=extra)
        kind = refusal_kind(err)
        if kind is None:
            return
        now = self._clock()
        with self._lock:
            streak = self._streak
            if streak is None or streak.kind != kind or now - streak.last > _STALE_S:
                self._streak = _Streak(kind, now, now, text)
            else:
                streak.last, streak.text = now, text

    def succeeded(self) -> None:
        """A call went through: whatever refused the bridge before does not any more."""
        with self._lock:
            self._streak = None

    def failure(self) -> KafkaAccessError | None:
        """The refusal that has lasted past the grace, diagnosed; None if there is none.
        A TLS diagnosis makes one handshake (at most a few seconds), once per streak."""
        now = self._clock()
        with self._lock:
            streak = self._streak
            if streak is None or now - streak.last > _STALE_S or now - streak.first < self._grace:
                return None
            if streak.diagnosed is not None:
                return streak.diagnosed
            kind, text = streak.kind, streak.text
        diagnosed = self._authentication(text) if kind == "auth" else self._tls(text)
        with self._lock:
            if self._streak is streak:
                streak.diagnosed = diagnosed
        return diagnosed

    def _authentication(self, text: str) -> KafkaAuthenticationError:
        k = self._settings
        mechanism = k.sasl_mechanism or "none"
        text = _normalised(text)
        if "supported mechanisms" in text:
            offered = text.split("supported mechanisms:", 1)[-1].strip(" )")
            if not offered:
                # A listener without SASL (PLAINTEXT or SSL) answers the handshake with an
                # empty list: the protocol is wrong, not the mechanism.
                return KafkaAuthenticationError(
                    f"the Kafka listener at {k.bootstrap_servers} offers no SASL mechanism: it"
                    f" does not speak SASL, so KAFKA_SECURITY_PROTOCOL={k.security_protocol}"
                    " is likely wrong (PLAINTEXT or SSL there?): check KAFKA_SECURITY_PROTOCOL"
                    " and KAFKA_BOOTSTRAP_SERVERS"
                )
            return KafkaAuthenticationError(
                f"the Kafka brokers do not offer SASL mechanism {mechanism} (they offer"
                f" {offered}): check KAFKA_SASL_MECHANISM"
            )
        if "invalid credentials" in text or not text:
            return KafkaAuthenticationError(
                f"Kafka refused the SASL credentials ({mechanism}) for user {k.sasl_username}:"
                " check KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
            )
        return KafkaAuthenticationError(
            f"Kafka authentication failed for user {k.sasl_username} ({text}):"
            " check KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME and"
            " KAFKA_SASL_PASSWORD"
        )

    def _tls(self, text: str) -> KafkaTlsError:
        found = _BROKER.match(text)
        address = found.group(1) if found else self._settings.bootstrap_servers.split(",")[0]
        verdict = self._verdict(address, self._settings)
        if not verdict.ok:
            return KafkaTlsError(f"Kafka TLS: {verdict.detail}")
        # Python's handshake passed where librdkafka's failed: report librdkafka's words.
        return KafkaTlsError(
            f"Kafka TLS: librdkafka could not verify {address} ({_normalised(text)}), though a"
            " handshake with the same CA could: check KAFKA_SSL_CA_LOCATION and KAFKA_PROPERTIES"
        )
