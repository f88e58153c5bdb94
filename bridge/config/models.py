"""The settings' models: each group (``PASSENTRY_*``, ``KAFKA_*``, ``BRIDGE_*``,
``SCHEMA_REGISTRY_*``) with its fields, limits and defaults, a source, and the whole config.
How values become a group is ``bridge.config.convert``'s; how they are read and merged,
``bridge.config.loading``'s.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

import msgspec
from msgspec import Meta, Struct, field

from bridge.config.convert import FieldError, Secret, SettingsGroup
from bridge.errors import ConfigError

if TYPE_CHECKING:
    from bridge.passentry.client import SettingNames

__all__ = [
    "SOURCE_ID_PATTERN",
    "TOPIC_PATTERN",
    "WEBHOOK_SECRET_MIN_BYTES",
    "BridgeSettings",
    "Config",
    "KafkaSettings",
    "PassEntrySettings",
    "RegistrySettings",
    "ScanFilters",
    "SourceConfig",
    "SourceId",
    "TopicName",
]


# Kafka's rule for a topic name, and the bridge's for a source id (it is part of topic names
# and transactional ids).
TOPIC_PATTERN = r"^[A-Za-z0-9._-]{1,249}$"
SOURCE_ID_PATTERN = r"^[A-Za-z0-9._-]{1,100}$"
TopicName = Annotated[str, Meta(pattern=TOPIC_PATTERN)]
SourceId = Annotated[str, Meta(pattern=SOURCE_ID_PATTERN)]


class ScanFilters(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The documented filters of ``GET /api/v1/scans``; unset ones are not sent."""

    entity: str | None = None
    reader_id: str | None = None
    pass_id: str | None = None
    validation_type: Literal["internalValidation", "externalValidation"] | None = None
    scan_type: Literal["nfc", "barcode"] | None = None
    status: Literal["successful", "failed"] | None = None
    event_id: str | None = None
    pass_template_name: str | None = None
    group_tag: str | None = None

    def as_query(self) -> dict[str, str]:
        names = {
            "entity": "entity",
            "reader_id": "readerId",
            "pass_id": "passId",
            "validation_type": "validationType",
            "scan_type": "scanType",
            "status": "status",
            "event_id": "eventId",
            "pass_template_name": "passTemplateName",
            "group_tag": "groupTag",
        }
        return {api: v for field, api in names.items() if (v := getattr(self, field)) is not None}


def _tls(
    ca: Path | None, certificate: Path | None, key: Path | None, key_password: str | None
) -> dict[str, str]:
    """The TLS properties librdkafka and the registry client both name this way."""
    conf = {
        name: str(path)
        for name, path in (
            ("ssl.ca.location", ca),
            ("ssl.certificate.location", certificate),
            ("ssl.key.location", key),
        )
        if path is not None
    }
    if key_password is not None:
        conf["ssl.key.password"] = key_password
    return conf


class PassEntrySettings(SettingsGroup, frozen=True):
    prefix: ClassVar[str] = "PASSENTRY_"

    api_url: str = "https://api.passentry.com"
    api_token: Secret | None = None
    api_token_file: Path | None = None
    filters: ScanFilters = field(default_factory=ScanFilters)
    per_page: Annotated[int, Meta(ge=1, le=1000)] = 100
    request_budget: Annotated[float, Meta(gt=0, le=100)] = 9.0
    timeout_s: Annotated[float, Meta(gt=0, le=300)] = 10.0
    # How long one call keeps retrying before the cycle gives up and polls again later.
    retry_deadline_s: Annotated[float, Meta(gt=0)] = 60.0
    lookback_s: Annotated[float, Meta(ge=0, le=86_400)] = 300.0
    # Each poll re-reads this much before where the last one ended: scans minted on a
    # PassEntry node with a slow clock, or visible a moment late, are caught at once.
    # Later ones wait for the sweep. Capped at the lookback.
    poll_overlap_s: Annotated[float, Meta(ge=0, le=3600)] = 10.0
    # How often the sweep compares PassEntry's counts over the lookback with ours.
    sweep_interval_s: Annotated[float, Meta(gt=0, le=3600)] = 30.0
    # How far behind the cursor the periodic late sweep looks (default: one lookback).
    # Scans that turn up later than lookback + sweep cannot be told apart from old ones.
    late_sweep_s: Annotated[float, Meta(ge=0, le=86_400)] | None = None
    poll_interval_min_s: Annotated[float, Meta(gt=0)] = 1.0
    poll_interval_max_s: Annotated[float, Meta(gt=0)] = 30.0
    pass_cache_size: Annotated[int, Meta(ge=0)] = 10_000
    backfill_concurrency: Annotated[int, Meta(ge=1, le=32)] = 4
    # One cycle holds at most this many scans in memory; a bigger backlog takes more cycles.
    max_cycle_scans: Annotated[int, Meta(ge=100, le=1_000_000)] = 10_000
    # passScanned webhooks: on when a secret (or a file holding it) is set. The previous
    # secret is accepted too while a rotation is under way.
    webhook_secret: Secret | None = None
    webhook_secret_file: Path | None = None
    webhook_previous_secret: Secret | None = None
    webhook_previous_secret_file: Path | None = None
    # An event whose timeStamp is older than this is refused (replay protection); polling
    # covers the scan.
    webhook_max_age_s: Annotated[float, Meta(gt=0, le=86_400)] = 300.0
    # ...and so is one stamped further than this ahead of the bridge's clock, which could
    # otherwise be replayed for as long as it is early.
    webhook_max_future_s: Annotated[float, Meta(ge=0, le=3600)] = 60.0
    # While webhooks flow, polling is the backstop: it runs this often, checks new time by
    # counts, and stays this far behind now so that webhooks in flight can land first.
    poll_interval_backstop_s: Annotated[float, Meta(gt=0, le=3600)] = 5.0
    webhook_settle_s: Annotated[float, Meta(ge=0, le=60)] = 2.0

    def __post_init__(self) -> None:
        scheme, host = _url_parts(self.api_url)
        if scheme not in ("http", "https") or not host:
            raise FieldError("api_url", "expected an http:// or https:// URL with a host")
        for name in ("webhook_secret", "webhook_previous_secret"):
            value = getattr(self, name)
            if value is not None and value.get_secret_value():
                try:
                    _check_webhook_secret(value.get_secret_value(), None)
                except ValueError as exc:
                    raise FieldError(name, str(exc)) from None
        if self.poll_interval_max_s < self.poll_interval_min_s:
            raise ValueError("poll_interval_max_s must be >= poll_interval_min_s")
        for name in ("api_token", "webhook_secret", "webhook_previous_secret"):
            if getattr(self, name) is not None and getattr(self, name + "_file") is not None:
                upper = "PASSENTRY_" + name.upper()
                raise ValueError(f"set only one of {upper} and {upper}_FILE")

    def token(self) -> str:
        """The token, read from the file if one is configured. Raises ConfigError."""
        token = _secret(self.api_token, self.api_token_file, "PASSENTRY_API_TOKEN")
        if token is None:
            raise ConfigError("PASSENTRY_API_TOKEN or PASSENTRY_API_TOKEN_FILE must be set")
        return token

    @property
    def webhooks_enabled(self) -> bool:
        return self.webhook_secret is not None or self.webhook_secret_file is not None

    def webhook_secrets(self) -> list[str]:
        """The secrets a webhook signature may be made with: the current one, then the
        previous one during a rotation. Empty when webhooks are off. Raises ConfigError,
        also for a secret shorter than WEBHOOK_SECRET_MIN_BYTES."""
        found = []
        for name in ("webhook_secret", "webhook_previous_secret"):
            upper = "PASSENTRY_" + name.upper()
            file = getattr(self, name + "_file")
            # Emptying the previous secret's file is how a rotation ends.
            previous = name == "webhook_previous_secret"
            secret = _secret(getattr(self, name), file, upper, empty_ok=previous)
            if secret:
                try:
                    _check_webhook_secret(secret, file)
                except ValueError as exc:
                    raise ConfigError(f"{upper}{'_FILE' if file else ''}: {exc}") from None
                found.append(secret)
        return found


# HMAC-SHA256 keys shorter than its 32-byte output make forgery cheaper to brute-force; a
# secret PassEntry generates is longer, so a short one is a copy-paste or test leftover.
WEBHOOK_SECRET_MIN_BYTES = 32


def _check_webhook_secret(secret: str, file: Path | None) -> None:
    size = len(secret.encode())
    if size < WEBHOOK_SECRET_MIN_BYTES:
        where = f"the secret in {file}" if file is not None else "the secret"
        raise ValueError(
            f"{where} is {size} bytes; a webhook secret must have at least"
            f" {WEBHOOK_SECRET_MIN_BYTES} (use the one PassEntry generated for the subscription)"
        )


def _url_parts(url: str) -> tuple[str, str]:
    try:
        parts = urlsplit(url)
    except ValueError:
        return "", ""
    return parts.scheme, parts.hostname or ""


def _secret(
    value: Secret | None, file: Path | None, name: str, *, empty_ok: bool = False
) -> str | None:
    """A secret given directly or as a file (a mounted Kubernetes Secret); None if neither,
    or if the file is empty and ``empty_ok``. An unreadable or (otherwise) empty file is a
    ConfigError naming the setting, never the value."""
    if file is not None:
        try:
            text = file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{name}_FILE: cannot read {file}: {exc.strerror}") from exc
        if not text:
            if empty_ok:
                return None
            raise ConfigError(f"{name}_FILE: {file} is empty")
        return text
    if value is None or not value.get_secret_value():
        return None
    return value.get_secret_value()


SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaSettings(SettingsGroup, frozen=True):
    prefix: ClassVar[str] = "KAFKA_"

    bootstrap_servers: str = "localhost:9092"
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: Secret | None = None
    # The password as a mounted file (the chart's way), read when a client is made.
    sasl_password_file: Path | None = None
    ssl_ca_location: Path | None = None
    ssl_certificate_location: Path | None = None
    ssl_key_location: Path | None = None
    ssl_key_password: Secret | None = None
    ssl_key_password_file: Path | None = None
    compression_type: Literal["none", "gzip", "snappy", "lz4", "zstd"] = "lz4"
    linger_ms: Annotated[int, Meta(ge=0, le=60_000)] = 20
    # A transaction left open by a writer that died, or is stuck, holds back every
    # read_committed reader of its partitions (consumers, other sources' restores) until
    # its next owner fences it or this timeout ends it: sized against the failover targets
    # (README, "Guarantees"), and above a broker's own failover (about 10 s).
    message_timeout_ms: Annotated[int, Meta(ge=1_000)] = 25_000
    transaction_timeout_ms: Annotated[int, Meta(ge=1_000)] = 30_000
    # Any other librdkafka property, e.g. KAFKA_PROPERTIES='{"client.rack": "eu-1a"}'.
    properties: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        hosts = [h.strip() for h in self.bootstrap_servers.split(",") if h.strip()]
        if not hosts or any(
            not re.fullmatch(r"[^\s:]+:\d{1,5}|\[[0-9a-fA-F:]+\]:\d{1,5}", h) for h in hosts
        ):
            raise FieldError("bootstrap_servers", "expected host:port[,host:port...]")
        msgspec.structs.force_setattr(self, "bootstrap_servers", ",".join(hosts))
        for name in ("sasl_password", "ssl_key_password"):
            if getattr(self, name) is not None and getattr(self, name + "_file") is not None:
                upper = "KAFKA_" + name.upper()
                raise ValueError(f"set only one of {upper} and {upper}_FILE")
        sasl = self.security_protocol.startswith("SASL_")
        if sasl and (
            self.sasl_mechanism is None
            or not self.sasl_username
            or (self.sasl_password is None and self.sasl_password_file is None)
        ):
            raise ValueError(
                f"security_protocol {self.security_protocol} needs sasl_mechanism, "
                "sasl_username and sasl_password (or sasl_password_file)"
            )
        if self.message_timeout_ms >= self.transaction_timeout_ms:
            raise ValueError(
                "message_timeout_ms must be lower than transaction_timeout_ms, or a stuck"
                " delivery outlives its transaction"
            )

    def librdkafka(self) -> dict[str, Any]:
        """The client properties shared by the producer, consumers and admin client."""
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
            # librdkafka's own log lines go through our logging (JSON in a pod), not stderr.
            "logger": logging.getLogger("librdkafka"),
            # A broker that hangs without closing its sockets (frozen, or cut off by a
            # partition) holds every request on them this long before librdkafka tries the
            # partition's new leader or coordinator: 60 s by default for consumers and the
            # admin client (the transactional producer's is already its transaction timeout).
            # Not lower: a live broker may rightly hold a write until a dead follower leaves
            # the in-sync replicas (the brokers' ~9 s session timeout, more on a busy
            # machine), and a transactional request that timed out then left producers in
            # INVALID_TXN_STATE on the three-node cluster when this was 10 s.
            "socket.timeout.ms": 30_000,
            "socket.connection.setup.timeout.ms": 10_000,
            # After an outage the brokers come back at once, but a client that backed off up
            # to librdkafka's 10 s would wait that long to notice.
            "reconnect.backoff.max.ms": 1_000,
        }
        if self.sasl_mechanism is not None:
            conf["sasl.mechanism"] = self.sasl_mechanism
            conf["sasl.username"] = self.sasl_username
            password = _secret(self.sasl_password, self.sasl_password_file, "KAFKA_SASL_PASSWORD")
            if password is not None:
                conf["sasl.password"] = password
        conf.update(
            _tls(
                self.ssl_ca_location,
                self.ssl_certificate_location,
                self.ssl_key_location,
                self.key_password(),
            )
        )
        conf.update(self.properties)
        return conf

    @property
    def read_committed_timeout_s(self) -> float:
        """How long a read_committed read to the end of a partition may wait: a transaction
        left open holds it back until its timeout, and then a while for the broker's abort."""
        return self.transaction_timeout_ms / 1000 + 30

    def key_password(self) -> str | None:
        """The TLS client key's password, read from its file if one is set. Raises
        ConfigError."""
        return _secret(self.ssl_key_password, self.ssl_key_password_file, "KAFKA_SSL_KEY_PASSWORD")


class BridgeSettings(SettingsGroup, frozen=True):
    prefix: ClassVar[str] = "BRIDGE_"

    source_id: SourceId = "default"
    scans_topic: TopicName = "passentry.scans"
    dlq_topic: TopicName = "passentry.scans.dlq"
    state_topic: TopicName = "passentry.bridge.state"
    # Optional routing, e.g. "passentry.scans.{status}" or "passentry.{scan_type}.scans".
    topic_template: str | None = None
    create_topics: bool = True
    topic_partitions: Annotated[int, Meta(ge=1, le=10_000)] = 6
    topic_replication_factor: Annotated[int, Meta(ge=-1, le=32)] = -1
    http_host: str = "0.0.0.0"
    http_port: Annotated[int, Meta(ge=0, le=65535)] = 9108
    # The webhook receiver listens apart from /metrics, so only it is exposed to PassEntry.
    webhook_port: Annotated[int, Meta(ge=0, le=65535)] = 8080
    # Accepted webhooks are made durable here (keyed by source id) before the 200.
    webhook_topic: TopicName = "passentry.bridge.webhooks"
    # How long the owner of a source gathers inbox events before one transaction.
    webhook_batch_ms: Annotated[int, Meta(ge=0, le=5000)] = 20
    # Verified webhook requests waiting on Kafka at once; more are answered 503 (PassEntry
    # retries them). Unverified and slow requests never count here.
    webhook_max_inflight: Annotated[int, Meta(ge=1, le=100_000)] = 256
    # Open connections to the receiver; more are answered 503 and closed. Each may buffer
    # one body (256 KiB at most), so this also bounds the memory bodies can take, and it
    # must leave file descriptors under the process's limit for everything else.
    webhook_max_connections: Annotated[int, Meta(ge=1, le=100_000)] = 512
    # A request's headers must arrive within this of its first byte (of the connection,
    # for the first request), and its body within this of its headers; 408 or a close
    # otherwise, so a slow client cannot hold a connection for long.
    webhook_header_timeout_s: Annotated[float, Meta(gt=0, le=300)] = 10.0
    webhook_body_timeout_s: Annotated[float, Meta(gt=0, le=300)] = 10.0
    # How long a connection may sit idle between a verified request's answer and the next
    # request (0: close after every answer). Refused requests always close theirs.
    webhook_keepalive_s: Annotated[float, Meta(ge=0, le=3600)] = 75.0
    # Event ids remembered for the replay window, so a redelivered event is answered 200
    # without a second inbox record; the oldest are forgotten beyond this many.
    webhook_replay_cache_size: Annotated[int, Meta(ge=0, le=10_000_000)] = 50_000
    # Replicas share the sources through this Kafka consumer group: the member assigned a
    # source's partition of the coordination topic runs it. Empty: no group; every source
    # of the config runs in this process (one replica only).
    group_id: Annotated[str, Meta(pattern=r"^([A-Za-z0-9._-]{1,249})?$")] = "passentry-bridge"
    coordination_topic: TopicName = "passentry.bridge.coordination"
    # Sources hash onto this many partitions; more partitions, fewer sources that share one.
    coordination_partitions: Annotated[int, Meta(ge=1, le=10_000)] = 32
    # A member silent this long is dropped and its sources move: the failover time after a
    # crash is this plus a restore.
    group_session_timeout_ms: Annotated[int, Meta(ge=1_000, le=300_000)] = 10_000
    # The consumer group protocol: classic (the session above, cooperative-sticky), or
    # consumer (KIP-848: the session, the heartbeat and the assignor are the brokers').
    group_protocol: Literal["classic", "consumer"] = "classic"
    shutdown_grace_s: Annotated[float, Meta(gt=0, le=3600)] = 25.0
    # /readyz turns false when no poll succeeded for this long.
    ready_max_poll_age_s: Annotated[float, Meta(gt=0)] = 120.0
    # Fault tests only: hold every transaction open this long before committing, so a test
    # can freeze or kill the bridge while one is open. Never set it in production.
    debug_txn_hold_s: Annotated[float, Meta(ge=0, le=60)] = 0.0
    log_format: Literal["auto", "json", "text"] = "auto"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    def __post_init__(self) -> None:
        value = self.topic_template
        if value is None:
            return
        fields = set(re.findall(r"{([^{}]*)}", value))
        unknown = fields - {"status", "scan_type"}
        if unknown:
            raise FieldError(
                "topic_template",
                f"unknown placeholder(s) {sorted(unknown)}; use {{status}} or {{scan_type}}",
            )
        if not re.fullmatch(r"[A-Za-z0-9._{}-]+", value):
            raise FieldError(
                "topic_template", "topic names may only use letters, digits, '.', '_' and '-'"
            )


class RegistrySettings(SettingsGroup, frozen=True):
    """``SCHEMA_REGISTRY_*``. Unset ``url`` means no registry: single-object encoding."""

    prefix: ClassVar[str] = "SCHEMA_REGISTRY_"

    url: str | None = None
    subject_name_strategy: Literal["topic", "record", "topic_record"] = "topic"
    mode: Literal["auto_register", "pinned", "latest"] = "auto_register"
    version: Annotated[int, Meta(ge=1)] | None = None
    basic_auth_user_info: Secret | None = None
    bearer_token: Secret | None = None
    # Either credential as a mounted file (the chart's way), read when the client is made.
    basic_auth_user_info_file: Path | None = None
    bearer_token_file: Path | None = None
    # confluent-kafka 2.16 refuses a static bearer token without a logical cluster id (it
    # sends it as target-sr-cluster); the identity pool is optional.
    bearer_logical_cluster: str | None = None
    bearer_identity_pool_id: str | None = None
    ssl_ca_location: Path | None = None
    ssl_certificate_location: Path | None = None
    ssl_key_location: Path | None = None
    ssl_key_password: Secret | None = None
    timeout_s: Annotated[float, Meta(gt=0, le=300)] = 10.0
    # The client's own retries inside one call; the service loop retries whole cycles with
    # backoff on top, so a few quick ones are enough here.
    max_retries: Annotated[int, Meta(ge=0, le=10)] = 2
    # How long a subject's schema id is trusted before it is looked up again. A registry
    # that lost its storage hands out ids afresh, and the old one may then name another
    # schema; re-checking bounds how long the bridge could tag records with it.
    cache_ttl_s: Annotated[float, Meta(ge=1, le=86_400)] = 300.0

    def __post_init__(self) -> None:
        if self.url is not None:
            # Set but empty (SCHEMA_REGISTRY_URL=) means no registry, not a bad URL.
            url = self.url.strip() or None
            for each in url.split(",") if url is not None else ():
                if not each.strip().startswith(("http://", "https://", "mock://")):
                    raise FieldError(
                        "url", f"{each.strip()!r} must start with http://, https:// or mock://"
                    )
            msgspec.structs.force_setattr(self, "url", url)
        if self.mode == "pinned" and self.version is None:
            raise ValueError("SCHEMA_REGISTRY_VERSION is required when SCHEMA_REGISTRY_MODE=pinned")
        if self.mode != "pinned" and self.version is not None:
            raise ValueError(
                "SCHEMA_REGISTRY_VERSION is only used with SCHEMA_REGISTRY_MODE=pinned"
            )
        for name in ("basic_auth_user_info", "bearer_token"):
            if getattr(self, name) is not None and getattr(self, name + "_file") is not None:
                upper = "SCHEMA_REGISTRY_" + name.upper()
                raise ValueError(f"set only one of {upper} and {upper}_FILE")
        basic = self.basic_auth_user_info is not None or self.basic_auth_user_info_file is not None
        bearer = self.bearer_token is not None or self.bearer_token_file is not None
        if basic and bearer:
            raise ValueError(
                "set only one of SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO(_FILE) and"
                " SCHEMA_REGISTRY_BEARER_TOKEN(_FILE)"
            )
        if (
            self.basic_auth_user_info is not None
            and ":" not in self.basic_auth_user_info.get_secret_value()
        ):
            raise ValueError("SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO must be user:password")
        if bearer and not self.bearer_logical_cluster:
            raise ValueError(
                "SCHEMA_REGISTRY_BEARER_TOKEN needs SCHEMA_REGISTRY_BEARER_LOGICAL_CLUSTER"
                " (the registry's logical cluster id, e.g. lsrc-abc123)"
            )
        if self.ssl_key_location is not None and self.ssl_certificate_location is None:
            raise ValueError(
                "SCHEMA_REGISTRY_SSL_KEY_LOCATION needs SCHEMA_REGISTRY_SSL_CERTIFICATE_LOCATION"
            )

    @property
    def enabled(self) -> bool:
        return self.url is not None

    def client_config(self) -> dict[str, Any]:
        """The configuration dict of confluent-kafka's ``SchemaRegistryClient``."""
        if self.url is None:
            raise ConfigError("SCHEMA_REGISTRY_URL is not set")
        conf: dict[str, Any] = {
            "url": self.url,
            "timeout": self.timeout_s,
            "max.retries": self.max_retries,
            "retries.wait.ms": 250,
            "retries.max.wait.ms": 2000,
        }
        basic = _secret(
            self.basic_auth_user_info,
            self.basic_auth_user_info_file,
            "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO",
        )
        if basic is not None:
            if ":" not in basic:
                raise ConfigError(
                    f"SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO_FILE: {self.basic_auth_user_info_file}"
                    " must hold user:password"
                )
            conf["basic.auth.user.info"] = basic
        bearer = _secret(self.bearer_token, self.bearer_token_file, "SCHEMA_REGISTRY_BEARER_TOKEN")
        if bearer is not None:
            conf["bearer.auth.credentials.source"] = "STATIC_TOKEN"
            conf["bearer.auth.token"] = bearer
            conf["bearer.auth.logical.cluster"] = self.bearer_logical_cluster
            if self.bearer_identity_pool_id:
                conf["bearer.auth.identity.pool.id"] = self.bearer_identity_pool_id
        conf.update(
            _tls(
                self.ssl_ca_location,
                self.ssl_certificate_location,
                self.ssl_key_location,
                None if self.ssl_key_password is None else self.ssl_key_password.get_secret_value(),
            )
        )
        return conf


@dataclass(frozen=True, slots=True)
class SourceConfig:
    """One PassEntry source: its id (the checkpoint key and the transactional id), its
    PassEntry settings (token, filters, pace, webhook secret) and where its scans go."""

    id: SourceId
    passentry: PassEntrySettings
    scans_topic: TopicName
    topic_template: str | None
    # ``sources[<id>]`` for an entry of the YAML file's list (None: the one source the
    # environment describes), and the settings that entry gives itself: messages name a
    # setting the way the user wrote it.
    path: str | None = None
    own: frozenset[str] = frozenset()

    def setting(self, name: str) -> str:
        """How the user spells this source's PassEntry setting ``name`` (``api_url``):
        ``sources[eu].api_url`` where its entry sets it, else the shared variable."""
        if self.path is not None and name in self.own:
            return f"{self.path}.{name}"
        return "PASSENTRY_" + name.upper()

    def token_setting(self) -> str:
        """Where the API token comes from, as the user wrote it."""
        for name in ("api_token_file", "api_token"):
            if self.path is not None and name in self.own:
                return f"{self.path}.{name}"
        return "PASSENTRY_API_TOKEN (or PASSENTRY_API_TOKEN_FILE)"

    def setting_names(self) -> SettingNames:
        """How messages about PassEntry's answers name this source's settings."""
        from bridge.passentry.client import SettingNames

        return SettingNames(self.setting("api_url"), self.token_setting())

    def token(self) -> str:
        """The source's API token. Raises ConfigError naming the setting as the user wrote
        it (``sources[eu].api_token_file: cannot read ...``)."""
        try:
            return self.passentry.token()
        except ConfigError as exc:
            if self.path is None:
                raise
            own = [n for n in ("api_token_file", "api_token") if n in self.own]
            if own:
                detail = str(exc).split(": ", 1)[-1]
                raise ConfigError(f"{self.path}.{own[0]}: {detail}") from None
            raise ConfigError(
                f"{self.path} has no api_token (or api_token_file), and no shared"
                " PASSENTRY_API_TOKEN (or PASSENTRY_API_TOKEN_FILE, passentry.api_token) is set"
            ) from None


@dataclass(frozen=True, slots=True)
class Config:
    passentry: PassEntrySettings
    kafka: KafkaSettings
    bridge: BridgeSettings
    # SCHEMA_REGISTRY_*; url unset (the default) means single-object encoding.
    schema_registry: RegistrySettings
    # The sources this deployment runs: the YAML file's ``sources:`` list, or the one the
    # environment describes (BRIDGE_SOURCE_ID with PASSENTRY_*).
    sources: tuple[SourceConfig, ...] = ()

    def source(self, source_id: str) -> SourceConfig:
        for source in self.sources:
            if source.id == source_id:
                return source
        raise ConfigError(f"no source {source_id!r} in the configuration")
