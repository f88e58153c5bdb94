from __future__ import annotations

import re
from pathlib import Path

import pytest

from bridge.config import load_config
from bridge.errors import ConfigError


def test_defaults_are_the_documented_names() -> None:
    c = load_config()
    assert c.passentry.api_url == "https://api.passentry.com"
    assert c.bridge.scans_topic == "passentry.scans"
    assert c.bridge.dlq_topic == "passentry.scans.dlq"
    assert c.passentry.request_budget == 9.0


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"BRIDGE_HTTP_PORT": "http"}, "BRIDGE_HTTP_PORT"),
        ({"BRIDGE_HTTP_PORT": "70000"}, "BRIDGE_HTTP_PORT"),
        ({"PASSENTRY_API_URL": "not a url"}, "PASSENTRY_API_URL"),
        ({"PASSENTRY_FILTERS__STATUS": "maybe"}, "PASSENTRY_FILTERS__STATUS"),
        ({"PASSENTRY_REQUEST_BUDGET": "0"}, "PASSENTRY_REQUEST_BUDGET"),
        ({"KAFKA_BOOTSTRAP_SERVERS": "nohostport"}, "KAFKA_BOOTSTRAP_SERVERS"),
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "sasl_mechanism"),
        ({"KAFKA_MESSAGE_TIMEOUT_MS": "300000"}, "transaction_timeout_ms"),
        ({"BRIDGE_SCANS_TOPIC": "bad topic!"}, "BRIDGE_SCANS_TOPIC"),
        ({"BRIDGE_TOPIC_TEMPLATE": "scans.{reader}"}, "BRIDGE_TOPIC_TEMPLATE"),
        ({"BRIDGE_UNKNOWN_THING": "1"}, "BRIDGE_UNKNOWN_THING"),
    ],
)
def test_bad_values_are_refused_with_the_setting_name(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], name: str
) -> None:
    assert re.search(name, str(_refusal(monkeypatch, env)))


def test_an_unknown_variable_is_refused_in_any_case_and_a_known_one_read(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    refused = _refusal(monkeypatch, {"bridge_htp_port": "9000"})
    assert str(refused) == (
        "invalid setting bridge_htp_port: not a setting; did you mean BRIDGE_HTTP_PORT?"
    )
    monkeypatch.delenv("bridge_htp_port")
    monkeypatch.setenv("bridge_http_port", "9000")
    monkeypatch.setenv("Kafka_Heap_Opts", "-Xmx1g")  # another tool's: logged, not refused
    assert load_config().bridge.http_port == 9000
    assert "ignoring unknown environment variable Kafka_Heap_Opts" in caplog.text


def test_token_from_env_or_file_never_in_messages(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PASSENTRY_API_TOKEN", "s3cr3t-token")
    c = load_config()
    assert c.passentry.token() == "s3cr3t-token"
    assert "s3cr3t-token" not in repr(c.passentry)
    monkeypatch.delenv("PASSENTRY_API_TOKEN")
    f = tmp_path / "token"
    f.write_text("from-file\n")
    monkeypatch.setenv("PASSENTRY_API_TOKEN_FILE", str(f))
    assert load_config().passentry.token() == "from-file"
    monkeypatch.setenv("PASSENTRY_API_TOKEN_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="PASSENTRY_API_TOKEN_FILE"):
        load_config().passentry.token()


def test_missing_token_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="PASSENTRY_API_TOKEN"):
        load_config().passentry.token()


def test_yaml_file_with_env_winning(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    f = tmp_path / "bridge.yaml"
    f.write_text(
        "passentry:\n  lookback_s: 120\n  filters:\n    status: failed\n"
        "kafka:\n  bootstrap_servers: a:9092,b:9092\n  properties:\n    client.rack: r1\n"
        "bridge:\n  scans_topic: from-file\n"
    )
    monkeypatch.setenv("BRIDGE_SCANS_TOPIC", "from-env")
    c = load_config(f)
    assert c.passentry.lookback_s == 120
    assert c.passentry.filters.as_query() == {"status": "failed"}
    assert c.kafka.librdkafka()["bootstrap.servers"] == "a:9092,b:9092"
    assert c.kafka.librdkafka()["client.rack"] == "r1"
    assert c.bridge.scans_topic == "from-env"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("kafka: [1, 2]\n", "section 'kafka'"),
        ("nope: {}\n", "unknown section"),
        ("bridge: {http_port: -1}\n", "bridge.http_port"),
        ("bridge: {typo_field: 1}\n", "bridge.typo_field: not a setting"),
        ("a: [\n", "not valid YAML"),
    ],
)
def test_bad_yaml_is_refused(tmp_path: Path, text: str, match: str) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(f)


def test_sasl_and_tls_reach_librdkafka(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in {
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": "u",
        "KAFKA_SASL_PASSWORD": "pw",
        "KAFKA_SSL_CA_LOCATION": "/etc/ca.pem",
    }.items():
        monkeypatch.setenv(k, v)
    conf = load_config().kafka.librdkafka()
    assert conf["sasl.mechanism"] == "SCRAM-SHA-512"
    assert conf["sasl.password"] == "pw"
    assert conf["ssl.ca.location"] == "/etc/ca.pem"


def test_kafka_and_registry_passwords_from_mounted_files(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    files = {
        "KAFKA_SASL_PASSWORD_FILE": "sasl-pw",
        "KAFKA_SSL_KEY_PASSWORD_FILE": "key-pw",
        "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO_FILE": "bridge:registry-pw",
    }
    for name, text in files.items():
        path = tmp_path / name.lower()
        path.write_text(text + "\n")
        monkeypatch.setenv(name, str(path))
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "bridge")
    monkeypatch.setenv("SCHEMA_REGISTRY_URL", "https://registry")
    config = load_config()
    conf = config.kafka.librdkafka()
    assert (conf["sasl.password"], conf["ssl.key.password"]) == ("sasl-pw", "key-pw")
    assert config.schema_registry.client_config()["basic.auth.user.info"] == "bridge:registry-pw"
    assert "sasl-pw" not in repr(config.kafka)


@pytest.mark.parametrize(
    ("env", "match"),
    [
        (
            {"KAFKA_SASL_PASSWORD": "pw", "KAFKA_SASL_PASSWORD_FILE": "/f"},
            "only one of KAFKA_SASL_PASSWORD and KAFKA_SASL_PASSWORD_FILE",
        ),
        (
            {
                "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO_FILE": "/a",
                "SCHEMA_REGISTRY_BEARER_TOKEN_FILE": "/b",
                "SCHEMA_REGISTRY_BEARER_LOGICAL_CLUSTER": "lsrc-1",
            },
            "only one of SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO",
        ),
        (
            {"SCHEMA_REGISTRY_BEARER_TOKEN_FILE": "/b"},
            "needs SCHEMA_REGISTRY_BEARER_LOGICAL_CLUSTER",
        ),
    ],
)
def test_a_password_given_twice_or_incomplete_is_refused(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], match: str
) -> None:
    assert re.search(match, str(_refusal(monkeypatch, env)))


def test_an_unreadable_password_file_names_its_setting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "bridge")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="KAFKA_SASL_PASSWORD_FILE: cannot read"):
        load_config().kafka.librdkafka()
    user_info = tmp_path / "user-info"
    user_info.write_text("no-colon")
    monkeypatch.setenv("SCHEMA_REGISTRY_URL", "https://registry")
    monkeypatch.setenv("SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO_FILE", str(user_info))
    with pytest.raises(ConfigError, match="must hold user:password"):
        load_config().schema_registry.client_config()


def test_environment_values_are_converted_as_their_settings_say(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for k, v in {
        "PASSENTRY_FILTERS": '{"status": "failed", "entity": "e-1"}',
        "PASSENTRY_FILTERS__ENTITY": "e-2",  # a nested variable over the JSON
        "passentry_lookback_s": "120",  # any case, as pydantic-settings read it
        "PASSENTRY_PER_PAGE": "50",
        "BRIDGE_CREATE_TOPICS": "off",
        "KAFKA_SSL_CA_LOCATION": str(tmp_path / "ca.pem"),
        "KAFKA_PROPERTIES": '{"client.rack": "r1"}',
    }.items():
        monkeypatch.setenv(k, v)
    c = load_config()
    assert c.passentry.filters.as_query() == {"status": "failed", "entity": "e-2"}
    assert (c.passentry.lookback_s, c.passentry.per_page) == (120.0, 50)
    assert c.bridge.create_topics is False
    assert c.kafka.ssl_ca_location == tmp_path / "ca.pem"
    assert c.kafka.properties == {"client.rack": "r1"}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"PASSENTRY_PER_PAGE": "0", "PASSENTRY_LOOKBACK_S": "soon"},
            "PASSENTRY_PER_PAGE: expected an integer >= 1; PASSENTRY_LOOKBACK_S: expected a number",
        ),
        (
            {"PASSENTRY_FILTERS__STATUS": "maybe"},
            "PASSENTRY_FILTERS__STATUS: invalid enum value 'maybe'; expected one of successful,"
            " failed",
        ),
        ({"PASSENTRY_LATE_SWEEP_S": ""}, "PASSENTRY_LATE_SWEEP_S: expected a number"),
        ({"BRIDGE_CREATE_TOPICS": "perhaps"}, "BRIDGE_CREATE_TOPICS: expected true or false"),
        (
            {"PASSENTRY_FILTERS": '{"stauts": "failed"}'},
            "PASSENTRY_FILTERS__STAUTS: not a setting; did you mean PASSENTRY_FILTERS__STATUS?",
        ),
        (
            {"PASSENTRY_FILTERS": "{"},
            'PASSENTRY_FILTERS: not valid JSON; give a JSON object, e.g. {"status": "failed"}',
        ),
        (
            {"PASSENTRY_POLL_INTERVAL_MIN_S": "5", "PASSENTRY_POLL_INTERVAL_MAX_S": "2"},
            "PASSENTRY: poll_interval_max_s must be >= poll_interval_min_s",
        ),
    ],
)
def test_each_problem_is_worded_for_the_user(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    assert str(_refusal(monkeypatch, env)) == "invalid setting " + message


def test_a_secret_never_prints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "hunter2-hunter2")
    password = load_config().kafka.sasl_password
    assert password is not None
    assert password.get_secret_value() == "hunter2-hunter2"
    assert "hunter2" not in f"{password} {password!r} {load_config().kafka!r}"


def _refusal(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> ConfigError:
    """The error load_config() raises with ``env`` set."""
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError) as refused:
        load_config()
    return refused.value
