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
(:func:`tls_verdict`), which reports OpenSSL's verification result; ``check`` uses it too.

librdkafka repeats a failing connection's log line on every reconnect. Its log lines and the
errors reported here are logged once per distinct text per minute (:class:`Repeats`), with
how many were held back.
"""

from __future__ import annotations

import logging
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from confluent_kafka import KafkaError

from bridge.config import KafkaSettings
from bridge.errors import ConfigError, KafkaAccessError, KafkaAuthenticationError, KafkaTlsError

__all__ = ["KafkaAccess", "Repeats", "TlsVerdict", "check_tls_files", "librdkafka_logger"]

log = logging.getLogger(__name__)

# A new SCRAM user is refused for a moment on some brokers; a refusal that lasts longer is
# not going away by itself.
GRACE_S = 10.0
# A streak ends when no such error came for this long (librdkafka's reconnect backoff is at
# most 10 s by default): the problem was fixed, or the client stopped trying.
_STALE_S = 30.0
_REPEAT_INTERVAL_S = 60.0

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


class Repeats:
    """Lets the first of each distinct message through, then one per interval with the
    number held back meanwhile."""

    def __init__(self, interval_s: float = _REPEAT_INTERVAL_S, *, max_keys: int = 1000) -> None:
        self._interval = interval_s
        self._max_keys = max_keys
        self._lock = threading.Lock()
        # key -> (when it was last let through, how many were held back since)
        self._seen: dict[tuple[Any, ...], tuple[float, int]] = {}

    def admit(self, key: tuple[Any, ...], now: float | None = None) -> int | None:
        """None: hold this one back. Otherwise let it through; the number is how many were
        held back since the last one that was."""
        now = time.monotonic() if now is None else now
        with self._lock:
            last = self._seen.get(key)
            if last is not None and now - last[0] < self._interval:
                self._seen[key] = (last[0], last[1] + 1)
                return None
            if last is None and len(self._seen) >= self._max_keys:
                # Forget what has been quiet longest; a flood of distinct texts stays bounded.
                oldest = sorted(self._seen, key=lambda k: self._seen[k][0])
                for old in oldest[: self._max_keys // 2]:
                    del self._seen[old]
            self._seen[key] = (now, 0)
            return last[1] if last is not None else 0


class _RepeatFilter(logging.Filter):
    """On the ``librdkafka`` logger: its lines arrive as ``("%s [%s] %s", facility, client
    name, text)``; the same facility and text count as a repeat whichever client logs it."""

    def __init__(self) -> None:
        super().__init__()
        self.repeats = Repeats()

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        text = str(args[2]) if len(args) == 3 else record.getMessage()
        facility = str(args[0]) if len(args) == 3 else ""
        held = self.repeats.admit((record.levelno, facility, _normalised(text)))
        if held is None:
            return False
        if held:
            record.repeated = held
        return True


_LOGGER_LOCK = threading.Lock()


def librdkafka_logger() -> logging.Logger:
    """The logger librdkafka's lines go to, with repeats held back (installed once)."""
    logger = logging.getLogger("librdkafka")
    with _LOGGER_LOCK:
        if not any(isinstance(f, _RepeatFilter) for f in logger.filters):
            logger.addFilter(_RepeatFilter())
    return logger


def check_tls_files(settings: KafkaSettings) -> None:
    """Each TLS and password file setting names a readable file; librdkafka would refuse
    to create a client with a cryptic message otherwise. Raises ConfigError naming the
    setting."""
    for name, path in (
        ("KAFKA_SSL_CA_LOCATION", settings.ssl_ca_location),
        ("KAFKA_SSL_CERTIFICATE_LOCATION", settings.ssl_certificate_location),
        ("KAFKA_SSL_KEY_LOCATION", settings.ssl_key_location),
        ("KAFKA_SASL_PASSWORD_FILE", settings.sasl_password_file),
        ("KAFKA_SSL_KEY_PASSWORD_FILE", settings.ssl_key_password_file),
    ):
        if path is None:
            continue
        try:
            with path.open("rb"):
                pass
        except OSError as exc:
            raise ConfigError(f"{name}: cannot read {path}: {exc.strerror}") from exc


@dataclass(frozen=True, slots=True)
class TlsVerdict:
    """One TLS handshake with a broker, made the way librdkafka makes it."""

    address: str
    ok: bool
    # ok: what was verified; not ok: the cause, naming the setting to fix.
    detail: str


def tls_verdict(address: str, settings: KafkaSettings, timeout_s: float = 5.0) -> TlsVerdict:
    """Connect to ``address`` (host:port) and verify its certificate against the configured
    CA (the system's store without one) and, unless disabled in KAFKA_PROPERTIES, its name."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    ca = settings.ssl_ca_location
    check_name = settings.properties.get("ssl.endpoint.identification.algorithm", "https")
    try:
        context = ssl.create_default_context(cafile=str(ca) if ca is not None else None)
        if settings.ssl_certificate_location is not None:
            context.load_cert_chain(
                str(settings.ssl_certificate_location),
                str(settings.ssl_key_location) if settings.ssl_key_location else None,
                settings.key_password(),
            )
    except (OSError, ssl.SSLError, ConfigError) as exc:
        return TlsVerdict(
            address,
            False,
            "cannot load the TLS files (KAFKA_SSL_CA_LOCATION, KAFKA_SSL_CERTIFICATE_LOCATION,"
            f" KAFKA_SSL_KEY_LOCATION, KAFKA_SSL_KEY_PASSWORD): {exc}",
        )
    context.check_hostname = check_name != "none"
    try:
        with (
            socket.create_connection((host, int(port)), timeout=timeout_s) as sock,
            context.wrap_socket(sock, server_hostname=host) as tls,
        ):
            cert = tls.getpeercert() or {}
    except ssl.SSLCertVerificationError as exc:
        return TlsVerdict(address, False, _verification_problem(address, host, exc, settings))
    except ssl.SSLError as exc:
        return TlsVerdict(
            address,
            False,
            f"the TLS handshake with {address} failed ({exc.reason or exc}): check"
            " KAFKA_SECURITY_PROTOCOL, and KAFKA_SSL_CERTIFICATE_LOCATION and"
            " KAFKA_SSL_KEY_LOCATION if the broker wants a client certificate",
        )
    except OSError as exc:
        return TlsVerdict(address, False, f"cannot connect to {address}: {exc.strerror or exc}")
    where = f"the CA in KAFKA_SSL_CA_LOCATION ({ca})" if ca else "the system's CA store"
    until = cert.get("notAfter", "?")
    alt_names: Any = cert.get("subjectAltName", ())
    names = ", ".join(str(v) for k, v in alt_names if k in ("DNS", "IP Address"))
    named = f", names {names}" if names else ""
    return TlsVerdict(
        address, True, f"certificate verified against {where}{named}; valid until {until}"
    )


# OpenSSL's X509_V_ERR_* codes (ssl.SSLCertVerificationError.verify_code).
_WRONG_NAME = {62, 63, 64}  # host name, email, IP address mismatch
_EXPIRY = {9, 10}  # not yet valid, expired
_UNTRUSTED = {2, 7, 18, 19, 20, 21}  # issuer unknown, bad signature, self-signed (in chain)


def _verification_problem(
    address: str, host: str, exc: ssl.SSLCertVerificationError, settings: KafkaSettings
) -> str:
    reason = exc.verify_message or str(exc)
    if exc.verify_code in _WRONG_NAME:
        return (
            f"the certificate of {address} does not name {host} ({reason}): check"
            " KAFKA_BOOTSTRAP_SERVERS (or the brokers' advertised names)"
        )
    if exc.verify_code in _EXPIRY:
        return (
            f"the certificate of {address} is not valid now ({reason}): the broker's"
            " certificate must be renewed"
        )
    ca = settings.ssl_ca_location
    if exc.verify_code in _UNTRUSTED or ca is None:
        signer = f"the CA in KAFKA_SSL_CA_LOCATION ({ca})" if ca else "a CA in the system's store"
        return (
            f"the certificate of {address} is not signed by {signer} ({reason}): set"
            " KAFKA_SSL_CA_LOCATION to the CA that signed the brokers' certificates"
        )
    return (
        f"the certificate of {address} could not be verified ({reason}): check"
        " KAFKA_SSL_CA_LOCATION"
    )


_Kind = Literal["auth", "tls"]
_KINDS: dict[int, _Kind] = {KafkaError._AUTHENTICATION: "auth", KafkaError._SSL: "tls"}


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
        kind = _KINDS.get(code)
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
