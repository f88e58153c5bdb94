"""Confluent Schema Registry mode: the wire format ``00`` + 4-byte big-endian schema id +
Avro body, with the id looked up (or registered) through confluent-kafka's client.

Enabled when ``SCHEMA_REGISTRY_URL`` is set; without it the bridge keeps Avro single-object
encoding. Only the value is framed: the key stays the reader id as plain UTF-8, so
partitioning and compaction by reader do not depend on the registry.

The bridge always writes with its local schema (``schemas/<name>/v<N>.avsc``) but tags the
bytes with the registry's id, and consumers decode with the registered schema as the writer
schema. That is only right when the two are the same schema, so in the ``pinned`` and
``latest`` modes a registered schema whose Parsing Canonical Form differs from the local one
is refused, at start-up and whenever a new subject is first used.

Errors, by remedy (bridge/errors.py): RegistryUnavailableError (transport error, timeout,
408, 429, 5xx: pause and retry); RegistryAuthError (401/403), RegistryRequestError (another
4xx: a missing subject or version, a schema refused) and SchemaMismatchError (the registered
schema is not the local one) are fatal.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from bridge.avro.framing import Framing
from bridge.avro.schemas import VersionedSchema
from bridge.cloudevents import registry_schema_url, scan_type
from bridge.config import RegistrySettings
from bridge.errors import (
    ConfigError,
    RegistryAuthError,
    RegistryRequestError,
    RegistryUnavailableError,
    SchemaMismatchError,
)

# The registry client costs ~0.3 s to import: it loads on first use, so that a bridge
# without a registry never pays for it.
if TYPE_CHECKING:
    from confluent_kafka.schema_registry import RegisteredSchema, SchemaRegistryClient

__all__ = ["CONTENT_TYPE", "RegistryFramer", "canonical", "make_client"]

log = logging.getLogger(__name__)


# The Content-Type header of registry-framed values. There is no registered media type for
# the Confluent wire format; this names it the way Confluent's own REST proxy does.
CONTENT_TYPE = "application/vnd.confluent.avro"
_MAGIC = b"\x00"


def make_client(settings: RegistrySettings) -> SchemaRegistryClient:
    """A client for ``settings`` (an in-memory one for ``mock://`` URLs). A setting the
    client refuses, or a certificate it cannot load, is a ConfigError."""
    from confluent_kafka.schema_registry import SchemaRegistryClient

    try:
        client: SchemaRegistryClient = SchemaRegistryClient.new_client(settings.client_config())
    except (ValueError, TypeError, OSError) as exc:
        # The message names the client's property, never a credential's value.
        raise ConfigError(
            f"SCHEMA_REGISTRY_*: the registry client refused the settings: {exc}"
        ) from exc
    return client


def canonical(schema_str: str) -> str:
    """The Parsing Canonical Form of an Avro schema given as JSON text."""
    from fastavro import parse_schema
    from fastavro.schema import to_parsing_canonical_form

    return str(to_parsing_canonical_form(parse_schema(json.loads(schema_str), named_schemas={})))


@dataclass(slots=True)
class _Resolved:
    framing: Framing
    schema_id: int
    checked_at: float
    stale: bool = False


class RegistryFramer:
    """``bridge.avro.framing.Framer`` for the Confluent wire format: one schema id per subject,
    looked up on first use and looked up again after ``cache_ttl_s`` or once the registry
    has been unreachable (it may have come back without its storage)."""

    def __init__(
        self,
        settings: RegistrySettings,
        schema: VersionedSchema,
        client: SchemaRegistryClient | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.schema = schema
        self.client = client if client is not None else make_client(settings)
        self._clock = clock
        self._by_subject: dict[str, _Resolved] = {}

    def subject(self, topic: str) -> str:
        strategy = self.settings.subject_name_strategy
        if strategy == "record":
            return self.schema.full_name
        if strategy == "topic_record":
            return f"{topic}-{self.schema.full_name}"
        return f"{topic}-value"

    def framing(self, topic: str) -> Framing:
        subject = self.subject(topic)
        known = self._by_subject.get(subject)
        now = self._clock()
        if (
            known is not None
            and not known.stale
            and now - known.checked_at < self.settings.cache_ttl_s
        ):
            return known.framing
        if known is not None:
            # confluent-kafka's client keeps its own cache: without clearing it the
            # re-check would never reach the registry.
            self.client.clear_caches()  # type: ignore[no-untyped-call]
        try:
            schema_id = self._resolve(subject)
        except RegistryUnavailableError:
            # Every id is suspect until the registry answers again. One that was right at
            # its last check keeps records flowing through a short outage, as Confluent's
            # serializers do; a subject never resolved has nothing to fall back on.
            for entry in self._by_subject.values():
                entry.stale = True
            if known is None:
                raise
            log.warning(
                "schema registry unreachable; keeping the schema id last confirmed",
                extra={"subject": subject, "schema_id": known.schema_id},
            )
            return known.framing
        if known is not None and known.schema_id == schema_id:
            known.checked_at, known.stale = now, False
            return known.framing
        resolved = self._by_subject[subject] = _Resolved(
            self._framing_for(schema_id), schema_id, now
        )
        if known is None:
            log.info(
                "schema registry subject ready",
                extra={"subject": subject, "schema_id": schema_id, "mode": self.settings.mode},
            )
        else:
            log.warning(
                "schema registry gave the subject a new schema id; tagging records with it",
                extra={
                    "subject": subject,
                    "old_schema_id": known.schema_id,
                    "schema_id": schema_id,
                },
            )
        return resolved.framing

    def _framing_for(self, schema_id: int) -> Framing:
        return Framing(
            prefix=_MAGIC + schema_id.to_bytes(4, "big"),
            content_type=CONTENT_TYPE,
            schema_version=str(self.schema.version),
            event_type=scan_type(self.schema.full_name),
            dataschema=registry_schema_url(self.settings.url or "", schema_id),
        )

    def check_startup(self, topics: Iterable[str]) -> dict[str, int]:
        """Resolve the subjects of ``topics`` now, so that a mismatch or a refused schema
        stops start-up instead of the first cycle. Returns subject -> schema id."""
        out: dict[str, int] = {}
        for topic in topics:
            self.framing(topic)
            subject = self.subject(topic)
            out[subject] = self._by_subject[subject].schema_id
        return out

    def registered(self, subject: str, version: int | Literal["latest"]) -> RegisteredSchema:
        """One version of ``subject`` as the registry has it."""
        what = f"version {version} of subject {subject!r}"
        try:
            if version == "latest":
                found: RegisteredSchema = self.client.get_latest_version(subject)
            else:
                found = self.client.get_version(subject, version)
        except Exception as exc:
            error = classify(exc, f"reading {what}")
            if isinstance(error, RegistryRequestError) and error.status == 404:
                error = RegistryRequestError(
                    f"{error}; register the local schema first (passentry-bridge schema"
                    " register) or use SCHEMA_REGISTRY_MODE=auto_register",
                    status=404,
                )
            raise error from exc
        return found

    def register(self, subject: str) -> int:
        """Register the local schema under ``subject`` (a no-op if it already is there)."""
        from confluent_kafka.schema_registry import Schema

        schema = Schema(json.dumps(self.schema.definition), "AVRO")
        try:
            schema_id: int = self.client.register_schema(subject, schema)
        except Exception as exc:
            raise classify(
                exc, f"registering {self.schema.name} v{self.schema.version} as {subject!r}"
            ) from exc
        return schema_id

    def _resolve(self, subject: str) -> int:
        mode = self.settings.mode
        if mode == "auto_register":
            return self.register(subject)
        version: int | Literal["latest"] = (
            self.settings.version if mode == "pinned" and self.settings.version else "latest"
        )
        found = self.registered(subject, version)
        self._check_same(subject, found)
        if found.schema_id is None:
            raise RegistryRequestError(f"the registry gave no schema id for {subject!r}")
        return found.schema_id

    def _check_same(self, subject: str, found: RegisteredSchema) -> None:
        from bridge.avro.compat import field_diff

        local = self.schema
        registered = found.schema
        problem = None
        if (registered.schema_type or "AVRO") != "AVRO":
            problem = f"it is a {registered.schema_type} schema, not Avro"
        elif registered.references:
            problem = "it uses schema references, which the bridge's schema does not"
        else:
            try:
                same = canonical(registered.schema_str or "") == local.canonical
            except (ValueError, TypeError, KeyError) as exc:
                problem = f"it cannot be parsed as Avro ({type(exc).__name__})"
            else:
                if not same:
                    remote = json.loads(registered.schema_str or "{}")
                    diff = field_diff(local.definition, remote)
                    problem = "local -> registered: " + (
                        "; ".join(diff[:5]) if diff else "names differ"
                    )
        if problem is not None:
            raise SchemaMismatchError(
                f"registered version {found.version} of subject {subject!r} (id"
                f" {found.schema_id}) differs from local {local.name} v{local.version}"
                f" ({problem}); register the local schema (passentry-bridge schema register,"
                " or SCHEMA_REGISTRY_MODE=auto_register) or pin the matching version"
                " (SCHEMA_REGISTRY_MODE=pinned, SCHEMA_REGISTRY_VERSION)"
            )

    def close(self) -> None:
        self.client.close()


def classify(exc: Exception, doing: str) -> Exception:
    """Our error for a failed registry call: retriable when trying again may help."""
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    transport, timeouts = _transport_errors()
    if isinstance(exc, transport):
        reason = "timed out" if isinstance(exc, timeouts) else "unreachable"
        return RegistryUnavailableError(
            f"schema registry {reason} while {doing}: {type(exc).__name__}"
        )
    if isinstance(exc, SchemaRegistryError):
        status = exc.http_status_code
        # The server's message can be long and echo the request: keep the start only.
        detail = f"HTTP {status}, code {exc.error_code}: {str(exc.error_message)[:200]}"
        if status in (408, 429) or status >= 500 or status < 0:
            return RegistryUnavailableError(f"schema registry failed while {doing} ({detail})")
        if status in (401, 403):
            return RegistryAuthError(
                f"schema registry refused the credentials while {doing} ({detail}); check"
                " SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO or SCHEMA_REGISTRY_BEARER_TOKEN"
            )
        if status == 409:
            return RegistryRequestError(
                f"schema registry refused the schema as incompatible with the subject's"
                f" compatibility setting while {doing} ({detail})",
                status=status,
            )
        return RegistryRequestError(f"schema registry refused {doing} ({detail})", status=status)
    if isinstance(exc, (ValueError, TypeError)):
        return RegistryRequestError(
            f"bad answer from the schema registry while {doing}: {str(exc)[:200]}"
        )
    return exc


def _transport_errors() -> tuple[tuple[type[Exception], ...], tuple[type[Exception], ...]]:
    """Connection errors and timeouts of the HTTP library under confluent-kafka's client:
    httpx2 when installed (its schemaregistry extra pulls it in), httpx otherwise."""
    import httpx

    transport: tuple[type[Exception], ...] = (httpx.TransportError,)
    timeouts: tuple[type[Exception], ...] = (httpx.TimeoutException,)
    try:
        import httpx2
    except ImportError:  # pragma: no cover - depends on the installed extras
        return transport, timeouts
    return (*transport, httpx2.TransportError), (*timeouts, httpx2.TimeoutException)
