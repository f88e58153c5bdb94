"""TLS to the brokers, checked the way a person would: the files the settings name can be
read, and a handshake with a broker verifies its certificate against the configured CA. A
failed verification is named by OpenSSL's own verdict (a wrong CA, a host name missing from
the certificate, an expired one), which librdkafka reports all alike."""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from typing import Any

from bridge.config import KafkaSettings
from bridge.errors import ConfigError

__all__ = ["TlsVerdict", "check_tls_files", "tls_verdict"]


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
