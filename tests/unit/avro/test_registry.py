"""Registry mode against confluent-kafka's in-memory ``mock://`` registry, and against a
tiny HTTP server for what the mock cannot show (auth headers, HTTP errors)."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import msgspec
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from bridge.avro.framing import Framer
from bridge.avro.registry import CONTENT_TYPE, RegistryFramer, canonical, make_client
from bridge.avro.schemas import VersionedSchema
from bridge.config import RegistrySettings, Secret, load_registry_settings
from bridge.config.convert import SettingsError, from_values
from bridge.errors import (
    ConfigError,
    FatalError,
    RegistryAuthError,
    RegistryRequestError,
    RegistryUnavailableError,
    RetriableError,
    SchemaMismatchError,
)

RECORD = "com.passentry.bridge.v1.ScanEvent"


def settings(**kw: Any) -> RegistrySettings:
    return RegistrySettings(url="mock://unit", **kw)


def other_schema(schema: VersionedSchema) -> Schema:
    """The bridge's schema plus one optional field: compatible, but not the same."""
    definition = copy.deepcopy(schema.definition)
    definition["fields"].append({"name": "extra", "type": ["null", "string"], "default": None})
    return Schema(json.dumps(definition), "AVRO")


# --- settings -----------------------------------------------------------------------------


def test_settings_come_from_schema_registry_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCHEMA_REGISTRY_URL", "https://sr.example:8081")
    monkeypatch.setenv("SCHEMA_REGISTRY_MODE", "pinned")
    monkeypatch.setenv("SCHEMA_REGISTRY_VERSION", "3")
    monkeypatch.setenv("SCHEMA_REGISTRY_SUBJECT_NAME_STRATEGY", "topic_record")
    s = load_registry_settings()
    assert (s.enabled, s.mode, s.version, s.subject_name_strategy) == (
        True, "pinned", 3, "topic_record",
    )  # fmt: skip


def test_no_url_means_no_registry() -> None:
    s = RegistrySettings()
    assert not s.enabled
    with pytest.raises(ConfigError, match="SCHEMA_REGISTRY_URL"):
        s.client_config()


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"mode": "pinned"}, "SCHEMA_REGISTRY_VERSION is required when SCHEMA_REGISTRY_MODE"),
        ({"version": 2}, "SCHEMA_REGISTRY_VERSION is only used with"),
        ({"bearer_token": "t"}, "needs SCHEMA_REGISTRY_BEARER_LOGICAL_CLUSTER"),
        ({"basic_auth_user_info": "nopassword"}, "must be user:password"),
        (
            {"basic_auth_user_info": "u:p", "bearer_token": "t", "bearer_logical_cluster": "c"},
            "set only one of",
        ),
        ({"ssl_key_location": "/k.pem"}, "needs SCHEMA_REGISTRY_SSL_CERTIFICATE_LOCATION"),
        ({"url": "ftp://x"}, "must start with http://, https:// or mock://"),
        ({"mode": "sometimes"}, "auto_register"),
    ],
)
def test_bad_settings_are_refused_by_name(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        from_values(RegistrySettings, {"url": "http://sr:8081", **kw})


def test_auth_and_tls_settings_map_to_the_client_properties() -> None:
    basic = RegistrySettings(
        url="https://sr:8081",
        basic_auth_user_info=Secret("user:pa:ss"),
        ssl_ca_location=Path("/ca.pem"),
        ssl_certificate_location=Path("/c.pem"),
        ssl_key_location=Path("/k.pem"),
        ssl_key_password=Secret("kp"),
        timeout_s=7,
    ).client_config()
    assert basic["basic.auth.user.info"] == "user:pa:ss"
    assert (basic["ssl.ca.location"], basic["ssl.certificate.location"]) == ("/ca.pem", "/c.pem")
    assert (basic["ssl.key.location"], basic["ssl.key.password"]) == ("/k.pem", "kp")
    assert basic["timeout"] == 7
    bearer = RegistrySettings(
        url="https://sr:8081",
        bearer_token=Secret("tok"),
        bearer_logical_cluster="lsrc-1",
        bearer_identity_pool_id="pool-9",
    ).client_config()
    assert bearer["bearer.auth.credentials.source"] == "STATIC_TOKEN"
    assert (bearer["bearer.auth.token"], bearer["bearer.auth.logical.cluster"]) == ("tok", "lsrc-1")
    assert bearer["bearer.auth.identity.pool.id"] == "pool-9"
    # confluent-kafka accepts the bearer mapping as it is (it rejects unknown properties).
    SchemaRegistryClient(bearer).close()


def test_secrets_never_show_in_the_settings_repr() -> None:
    s = RegistrySettings(url="http://sr", basic_auth_user_info=Secret("user:hunter2"))
    assert "hunter2" not in repr(s)


def test_a_certificate_that_cannot_be_loaded_is_a_config_error(tmp_path: Path) -> None:
    s = RegistrySettings(url="https://sr:8081", ssl_ca_location=tmp_path / "missing.pem")
    with pytest.raises(ConfigError, match="SCHEMA_REGISTRY_"):
        make_client(s)


# --- subjects and modes against mock:// --------------------------------------------------


@pytest.mark.parametrize(
    ("strategy", "subject"),
    [
        ("topic", "scans-value"),
        ("record", RECORD),
        ("topic_record", f"scans-{RECORD}"),
    ],
)
def test_each_strategy_registers_under_its_subject(
    registry: SchemaRegistryClient, scan_schema: VersionedSchema, strategy: str, subject: str
) -> None:
    framer = RegistryFramer(settings(subject_name_strategy=strategy), scan_schema, registry)
    framing = framer.framing("scans")
    assert registry.get_subjects() == [subject]
    registered = registry.get_latest_version(subject)
    assert framing.prefix == b"\x00" + registered.schema_id.to_bytes(4, "big")
    assert canonical(registered.schema.schema_str) == scan_schema.canonical
    assert framing.content_type == CONTENT_TYPE
    assert framing.schema_version == str(scan_schema.version)


def test_record_strategy_shares_one_subject_across_topics(
    registry: SchemaRegistryClient, scan_schema: VersionedSchema
) -> None:
    framer = RegistryFramer(settings(subject_name_strategy="record"), scan_schema, registry)
    assert framer.check_startup(["a", "b"]) == {RECORD: 1}
    assert registry.get_subjects() == [RECORD]


def test_auto_register_is_idempotent_and_cached_per_subject(
    registry: SchemaRegistryClient, scan_schema: VersionedSchema
) -> None:
    framer: Framer = RegistryFramer(settings(), scan_schema, registry)
    first = framer.framing("t")
    again = RegistryFramer(settings(), scan_schema, registry).framing("t")
    assert again == first
    assert registry.get_versions("t-value") == [1]
    # Cached: the subject is looked up once, so losing it later changes nothing mid-run.
    registry.delete_subject("t-value")
    assert framer.framing("t") == first


def test_pinned_uses_the_pinned_version_when_it_is_the_local_schema(
    registry: SchemaRegistryClient, scan_schema: VersionedSchema
) -> None:
    registry.register_schema("t-value", other_schema(scan_schema))
    local_id = registry.register_schema("t-value", Schema(scan_schema.text, "AVRO"))
    framer = RegistryFramer(settings(mode="pinned", version=2), scan_schema, registry)
    assert framer.check_startup(["t"]) == {"t-value": local_id}
    assert framer.framing("t").prefix == b"\x00" + local_id.to_bytes(4, "big")


def test_pinned_refuses_a_version_that_is_not_the_local_schema(
    registry: SchemaRegistryClient, scan_schema: VersionedSchema
) -> None:
    registry.register_schema("t-value", other_schema(scan_schema))
    framer = RegistryFramer(settings(mode="pinned", version=1), scan_schema, registry)
    with pytest.raises(SchemaMismatchError) as caught:
        framer.check_startup(["t"])
    message = str(caught.value)
    assert "registered version 1 of subject 't-value'" in message
    assert "differs from local passentry_scan v1" in message
    assert "local -> registered: + extra" in message  # says which field differs
    assert "register the local schema" in message
    assert "pin the matching version" in message
    assert isinstance(caught.value, FatalError)


def test_pinned_to_a_missing_version_is_fatal(
    registry: SchemaRegistryClient, scan_schema: VersionedSchema
) -> None:
    framer = RegistryFramer(settings(mode="pinned", version=4), scan_schema, registry)
    with pytest.raises(RegistryRequestError, match="version 4 of subject 't-value'"):
        framer.framing("t")


def test_a_doc_only_difference_is_the_same_schema(
    registry: SchemaRegistryClient, scan_schema: VersionedSchema
) -> None:
    definition = copy.deepcopy(scan_schema.definition)
    definition["doc"] = "reworded"
    schema_id = registry.register_schema("t-value", Schema(json.dumps(definition), "AVRO"))
    framer = RegistryFramer(settings(mode="latest"), scan_schema, registry)
    assert framer.framing("t").prefix[1:] == schema_id.to_bytes(4, "big")


def test_latest_accepts_the_local_schema_and_refuses_a_newer_different_one(
    registry: SchemaRegistryClient, scan_schema: VersionedSchema
) -> None:
    registry.register_schema("t-value", Schema(scan_schema.text, "AVRO"))
    assert RegistryFramer(settings(mode="latest"), scan_schema, registry).check_startup(["t"])
    registry.register_schema("t-value", other_schema(scan_schema))
    with pytest.raises(SchemaMismatchError, match="registered version 2 of subject 't-value'"):
        RegistryFramer(settings(mode="latest"), scan_schema, registry).check_startup(["t"])


def test_latest_with_no_subject_refuses_to_start(
    registry: SchemaRegistryClient, scan_schema: VersionedSchema
) -> None:
    with pytest.raises(RegistryRequestError) as caught:
        RegistryFramer(settings(mode="latest"), scan_schema, registry).check_startup(["t"])
    assert caught.value.status == 404
    assert "register the local schema first" in str(caught.value)


def test_a_non_avro_registered_schema_is_a_mismatch(
    registry: SchemaRegistryClient, scan_schema: VersionedSchema
) -> None:
    registry.register_schema("t-value", Schema('{"type": "object"}', "JSON"))
    with pytest.raises(SchemaMismatchError, match="JSON schema, not Avro"):
        RegistryFramer(settings(mode="latest"), scan_schema, registry).framing("t")


# --- over HTTP: unreachable, errors, auth headers -----------------------------------------


def test_an_unreachable_registry_is_retriable(scan_schema: VersionedSchema) -> None:
    s = RegistrySettings(url="http://127.0.0.1:1", max_retries=0, timeout_s=2)
    framer = RegistryFramer(s, scan_schema)
    with pytest.raises(RegistryUnavailableError, match="unreachable") as caught:
        framer.framing("t")
    assert isinstance(caught.value, RetriableError)
    with pytest.raises(RetriableError):
        RegistryFramer(msgspec.structs.replace(s, mode="latest"), scan_schema).check_startup(["t"])


class _Registry(BaseHTTPRequestHandler):
    status = 200
    body: ClassVar[dict[str, Any]] = {}
    seen: ClassVar[list[dict[str, str]]] = []

    def _answer(self) -> None:
        type(self).seen.append(dict(self.headers))
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        payload = json.dumps(self.body).encode()
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_registry() -> Iterator[tuple[str, type[_Registry]]]:
    handler = type("Handler", (_Registry,), {"seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (503, RegistryUnavailableError),
        (429, RegistryUnavailableError),
        (401, RegistryAuthError),
        (403, RegistryAuthError),
        (409, RegistryRequestError),
        (422, RegistryRequestError),
    ],
)
def test_http_errors_are_classified_by_remedy(
    http_registry: tuple[str, type[_Registry]],
    scan_schema: VersionedSchema,
    status: int,
    error: type[Exception],
) -> None:
    url, handler = http_registry
    handler.status, handler.body = status, {"error_code": status * 100, "message": "nope"}
    framer = RegistryFramer(RegistrySettings(url=url, max_retries=0), scan_schema)
    with pytest.raises(error, match=f"HTTP {status}"):
        framer.framing("t")


def test_the_registry_id_comes_from_the_http_answer(
    http_registry: tuple[str, type[_Registry]], scan_schema: VersionedSchema
) -> None:
    url, handler = http_registry
    handler.status, handler.body = 200, {"id": 77}
    framing = RegistryFramer(RegistrySettings(url=url), scan_schema).framing("t")
    assert framing.prefix == b"\x00\x00\x00\x00\x4d"


def test_basic_auth_is_sent(
    http_registry: tuple[str, type[_Registry]], scan_schema: VersionedSchema
) -> None:
    url, handler = http_registry
    handler.status, handler.body = 200, {"id": 5}
    s = RegistrySettings(url=url, basic_auth_user_info=Secret("bridge:s3cret"))
    RegistryFramer(s, scan_schema).framing("t")
    # base64("bridge:s3cret")
    assert handler.seen[-1]["Authorization"] == "Basic YnJpZGdlOnMzY3JldA=="


def test_bearer_auth_is_sent_with_the_logical_cluster(
    http_registry: tuple[str, type[_Registry]], scan_schema: VersionedSchema
) -> None:
    url, handler = http_registry
    handler.status, handler.body = 200, {"id": 5}
    s = RegistrySettings(
        url=url,
        bearer_token=Secret("tok-1"),
        bearer_logical_cluster="lsrc-7",
        bearer_identity_pool_id="p",
    )
    RegistryFramer(s, scan_schema).framing("t")
    headers = handler.seen[-1]
    assert headers["Authorization"] == "Bearer tok-1"
    assert headers["target-sr-cluster"] == "lsrc-7"
    assert headers["Confluent-Identity-Pool-Id"] == "p"


def test_mock_registries_are_private_to_their_client() -> None:
    # confluent-kafka 2.16 keeps a mock:// registry's schemas in the client instance, not
    # per URL: a test that wants to read what the bridge registered must share its client.
    one = SchemaRegistryClient.new_client({"url": "mock://shared-name"})
    two = SchemaRegistryClient.new_client({"url": "mock://shared-name"})
    one.register_schema("s", Schema('"string"', "AVRO"))
    assert one.get_subjects() == ["s"]
    assert two.get_subjects() == []


class _Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_a_cached_id_is_checked_again_after_the_ttl_and_a_new_one_is_adopted(
    http_registry: tuple[str, type[_Registry]], scan_schema: VersionedSchema
) -> None:
    url, handler = http_registry
    clock = _Clock()
    handler.status, handler.body = 200, {"id": 5}
    framer = RegistryFramer(RegistrySettings(url=url, cache_ttl_s=60), scan_schema, clock=clock)
    assert framer.framing("t").prefix == b"\x00\x00\x00\x00\x05"
    asked = len(handler.seen)
    # Inside the TTL the registry is not asked, whatever it would say now.
    handler.body = {"id": 9}
    clock.now += 59
    assert framer.framing("t").prefix == b"\x00\x00\x00\x00\x05"
    assert len(handler.seen) == asked
    # Past it, the registry is asked again (through the client's own cache) and its
    # answer wins: a registry that lost its storage hands out new ids.
    clock.now += 2
    assert framer.framing("t").prefix == b"\x00\x00\x00\x00\x09"
    assert len(handler.seen) == asked + 1


def test_an_outage_keeps_known_ids_and_rechecks_them_once_the_registry_answers(
    http_registry: tuple[str, type[_Registry]], scan_schema: VersionedSchema
) -> None:
    url, handler = http_registry
    clock = _Clock()
    handler.status, handler.body = 200, {"id": 5}
    s = RegistrySettings(url=url, max_retries=0, cache_ttl_s=60)
    framer = RegistryFramer(s, scan_schema, clock=clock)
    assert framer.framing("known").prefix[1:] == (5).to_bytes(4, "big")
    handler.status, handler.body = 503, {"error_code": 50301, "message": "down"}
    # A subject never resolved cannot be framed while the registry is down...
    with pytest.raises(RegistryUnavailableError, match="HTTP 503"):
        framer.framing("new")
    # ...and the failure makes every known id suspect, but one confirmed before the
    # outage keeps records flowing (the registry is asked, and still fails).
    asked = len(handler.seen)
    assert framer.framing("known").prefix[1:] == (5).to_bytes(4, "big")
    assert len(handler.seen) == asked + 1
    # Back, with other ids: the known subject is checked at once, not after the TTL.
    handler.status, handler.body = 200, {"id": 12}
    assert framer.framing("known").prefix[1:] == (12).to_bytes(4, "big")
    assert framer.framing("new").prefix[1:] == (12).to_bytes(4, "big")
    # Confirmed again: no more requests until the TTL runs out.
    asked = len(handler.seen)
    framer.framing("known")
    assert len(handler.seen) == asked
