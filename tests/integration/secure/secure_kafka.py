"""The secure broker (``scripts/kafka-local --secure``) as the tests see it, and ACL helpers.

``SecureKafka`` is what the script prints (its client.json): the SASL_SSL bootstrap, the CA,
the users and their passwords, plus a listener whose certificate names another host and an
unrelated CA, for the failure tests. ``conf()`` makes librdkafka settings for any user, with
any of them overridden.

``Grant`` is one ACL in the shape ``kafka-acls.sh`` takes it; ``parse_kafka_acls`` turns a
``kafka-acls.sh --add ...`` command line into grants, so the README's commands are the single
source of the bridge's ACL list. ``readme_acl_commands`` reads those commands out of the
README's ACL section. ``AclAdmin`` grants and revokes through the admin user and
waits until the broker's authorizer has applied the change (ACLs travel through the KRaft
metadata log: the CreateAcls answer comes before the broker enforces them).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shlex
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from scripts.lib.jvm_service import running
from scripts.lib.kafka_local import Broker

ROOT = Path(__file__).resolve().parents[3]
_LIBRDKAFKA_LOG = logging.getLogger("librdkafka")
KAFKA_LOCAL = ROOT / "scripts" / "kafka-local"


@dataclass(frozen=True)
class SecureKafka:
    bootstrap_servers: str
    wrong_host_bootstrap_servers: str
    ca: Path
    wrong_ca: Path
    users: dict[str, str]
    super_user: str
    admin_properties: Path
    env_files: dict[str, Path]
    client_config: Path

    @classmethod
    def load(cls, client_config: Path) -> SecureKafka:
        raw = json.loads(client_config.read_text())
        return cls(
            bootstrap_servers=raw["bootstrap_servers"],
            wrong_host_bootstrap_servers=raw["wrong_host_bootstrap_servers"],
            ca=Path(raw["ssl_ca_location"]),
            wrong_ca=Path(raw["wrong_ca_location"]),
            users=dict(raw["users"]),
            super_user=raw["super_user"],
            admin_properties=Path(raw["admin_properties"]),
            env_files={k: Path(v) for k, v in raw["env_files"].items()},
            client_config=client_config,
        )

    def conf(
        self, user: str = "bridge", password: str | None = None, **extra: Any
    ) -> dict[str, Any]:
        """librdkafka settings for ``user``; ``extra`` (dots as underscores) override them."""
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": user,
            "sasl.password": self.users.get(user, "") if password is None else password,
            "ssl.ca.location": str(self.ca),
            # As in the bridge: librdkafka's log lines go to logging, not to stderr (where
            # lines from a client outliving its test would escape pytest's capture).
            "logger": _LIBRDKAFKA_LOG,
        }
        conf.update({k.replace("_", "."): v for k, v in extra.items()})
        return conf

    def kafka_settings(self, user: str, password: str | None = None) -> dict[str, Any]:
        """The bridge's ``kafka`` config section (KAFKA_*) for ``user``."""
        return {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": user,
            "sasl_password": self.users[user] if password is None else password,
            "ssl_ca_location": str(self.ca),
        }

    def admin(self) -> AdminClient:
        return AdminClient(self.conf(self.super_user))


# --- ACLs in kafka-acls.sh terms ------------------------------------------------------------

_RESOURCE_FLAGS = {
    "--topic": ResourceType.TOPIC,
    "--group": ResourceType.GROUP,
    "--transactional-id": ResourceType.TRANSACTIONAL_ID,
}
_OPERATIONS = {
    "Read": AclOperation.READ,
    "Write": AclOperation.WRITE,
    "Describe": AclOperation.DESCRIBE,
    "Create": AclOperation.CREATE,
    "Delete": AclOperation.DELETE,
    "Alter": AclOperation.ALTER,
    "DescribeConfigs": AclOperation.DESCRIBE_CONFIGS,
    "AlterConfigs": AclOperation.ALTER_CONFIGS,
    "IdempotentWrite": AclOperation.IDEMPOTENT_WRITE,
    "ClusterAction": AclOperation.CLUSTER_ACTION,
    "All": AclOperation.ALL,
}


@dataclass(frozen=True, order=True)
class Grant:
    """One ALLOW ACL: ``principal`` may do ``operation`` on a resource (host ``*``)."""

    principal: str
    resource: str  # Topic, Group, TransactionalId or Cluster
    name: str
    pattern: str  # LITERAL or PREFIXED
    operation: str  # as kafka-acls.sh spells it: Read, Write, Describe, ...

    def binding(self) -> AclBinding:
        return AclBinding(
            ResourceType[_resource_type_name(self.resource)],
            self.name,
            ResourcePatternType[self.pattern],
            self.principal,
            "*",
            _OPERATIONS[self.operation],
            AclPermissionType.ALLOW,
        )

    @classmethod
    def from_binding(cls, binding: AclBinding) -> Grant:
        resource = {v: k for k, v in _RESOURCE_NAMES.items()}[binding.restype.name]
        operation = {v: k for k, v in _OPERATIONS.items()}[binding.operation]
        return cls(
            binding.principal,
            resource,
            binding.name,
            binding.resource_pattern_type.name,
            operation,
        )

    def __str__(self) -> str:
        prefixed = "prefixed " if self.pattern == "PREFIXED" else ""
        return f"{self.operation} on {prefixed}{self.resource} {self.name}"


_RESOURCE_NAMES = {
    "Topic": "TOPIC",
    "Group": "GROUP",
    "TransactionalId": "TRANSACTIONAL_ID",
    "Cluster": "BROKER",
}


def _resource_type_name(resource: str) -> str:
    return _RESOURCE_NAMES[resource]


def parse_kafka_acls(command: str) -> list[Grant]:
    """The grants of one ``kafka-acls.sh --add ...`` command (the flags the README uses)."""
    args = shlex.split(command)
    principals: list[str] = []
    operations: list[str] = []
    resources: list[tuple[str, str]] = []
    pattern = "LITERAL"
    i = 1
    while i < len(args):
        flag = args[i]
        value = args[i + 1] if i + 1 < len(args) else ""
        if flag == "--allow-principal":
            principals.append(value)
        elif flag == "--operation":
            operations.append(value)
        elif flag == "--resource-pattern-type":
            pattern = value.upper()
        elif flag in _RESOURCE_FLAGS:
            resources.append((_RESOURCE_FLAGS[flag].name, value))
        elif flag in ("--bootstrap-server", "--command-config"):
            pass
        elif flag == "--cluster":
            resources.append(("BROKER", "kafka-cluster"))
            i += 1
            continue
        elif flag == "--add":
            i += 1
            continue
        else:
            raise ValueError(f"parse_kafka_acls does not know {flag} in: {command}")
        i += 2
    names = {v: k for k, v in _RESOURCE_NAMES.items()}
    return sorted(
        Grant(p, names[kind], name, pattern, op)
        for p in principals
        for kind, name in resources
        for op in operations
    )


class AclAdmin:
    """Grants and revokes ACLs as the super user; each call returns once they are enforced."""

    def __init__(self, kafka: SecureKafka, timeout_s: float = 30.0) -> None:
        self._admin = kafka.admin()
        self._kafka = kafka
        self._timeout = timeout_s

    def grant(self, grants: Iterable[Grant]) -> None:
        bindings = [g.binding() for g in grants]
        if not bindings:
            return
        for future in self._admin.create_acls(bindings, request_timeout=self._timeout).values():
            future.result(timeout=self._timeout)
        self._wait(lambda present: all(b in present for b in bindings), "granted")

    def wait_present(self, grants: Iterable[Grant]) -> None:
        """Wait until the broker enforces ``grants`` (made some other way, e.g. kafka-acls)."""
        bindings = [g.binding() for g in grants]
        self._wait(lambda present: all(b in present for b in bindings), "granted")

    def revoke(self, grants: Iterable[Grant]) -> None:
        bindings = [g.binding() for g in grants]
        if not bindings:
            return
        filters = [_as_filter(b) for b in bindings]
        for future in self._admin.delete_acls(filters, request_timeout=self._timeout).values():
            future.result(timeout=self._timeout)
        self._wait(lambda present: not any(b in present for b in bindings), "revoked")

    def revoke_all(self, principal: str) -> None:
        everything = AclBindingFilter(
            ResourceType.ANY, None, ResourcePatternType.ANY, principal, None,
            AclOperation.ANY, AclPermissionType.ANY,
        )  # fmt: skip
        for future in self._admin.delete_acls([everything]).values():
            future.result(timeout=self._timeout)
        self._wait(lambda present: not any(b.principal == principal for b in present), "revoked")

    def present(self) -> list[AclBinding]:
        everything = AclBindingFilter(
            ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
            AclOperation.ANY, AclPermissionType.ANY,
        )  # fmt: skip
        found: list[AclBinding] = self._admin.describe_acls(everything).result(self._timeout)
        return found

    def _wait(self, done: Callable[[list[AclBinding]], bool], what: str) -> None:
        # DescribeAcls is answered from the broker's authorizer: once the change shows there,
        # the broker enforces it.
        deadline = time.monotonic() + self._timeout
        while not done(self.present()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"ACLs not {what} within {self._timeout}s")
            time.sleep(0.05)

    def add_user(self, name: str | None = None, password: str | None = None) -> tuple[str, str]:
        """A new SCRAM-SHA-512 user; returns once it can authenticate."""
        name = name or f"user-{uuid.uuid4().hex[:10]}"
        password = password or uuid.uuid4().hex
        info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096)
        upsert = UserScramCredentialUpsertion(name, info, password.encode())
        for future in self._admin.alter_user_scram_credentials([upsert]).values():
            future.result(timeout=self._timeout)
        probe = AdminClient(self._kafka.conf(name, password))
        deadline = time.monotonic() + self._timeout
        while True:
            try:
                probe.list_topics(timeout=2)
                return name, password
            except KafkaException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


def _as_filter(binding: AclBinding) -> AclBindingFilter:
    return AclBindingFilter(
        binding.restype, binding.name, binding.resource_pattern_type, binding.principal,
        binding.host, binding.operation, binding.permission_type,
    )  # fmt: skip


@dataclass
class Setup:
    """A user, two topics with a committed record each (as a restarting bridge finds
    them), and a transactional id: the bridge's resources, in miniature."""

    kafka: SecureKafka
    user: str
    password: str
    scans: str
    state: str
    txn_id: str

    def conf(self, **extra: Any) -> dict[str, Any]:
        return self.kafka.conf(self.user, self.password, **extra)

    def producer(self) -> Producer:
        return Producer({**self.conf(), "transactional.id": self.txn_id})

    def reader(self) -> Consumer:
        """Like the bridge's start-up readers: a throwaway group, assigned, read_committed."""
        return Consumer(
            {
                **self.conf(),
                "group.id": f"passentry-bridge-restore-{uuid.uuid4()}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
            }
        )


def bridge_grants(s: Setup) -> list[Grant]:
    p = f"User:{s.user}"
    return [
        *(
            Grant(p, "Topic", t, "LITERAL", op)
            for t in (s.scans, s.state)
            for op in ("Read", "Write")
        ),
        Grant(p, "TransactionalId", s.txn_id, "LITERAL", "Write"),
        Grant(p, "Group", "passentry-bridge-restore-", "PREFIXED", "Describe"),
    ]


def grant_all_but(acls: AclAdmin, s: Setup, missing: Callable[[Grant], bool]) -> None:
    grants = bridge_grants(s)
    kept = [g for g in grants if not missing(g)]
    assert len(kept) < len(grants), "the test removes nothing"
    acls.grant(kept)


def read_committed(kafka: SecureKafka, topic: str, timeout_s: float = 60.0) -> list[Message]:
    """Every committed record of ``topic``, read as the super user up to the current end."""
    admin = kafka.admin()
    partitions = admin.list_topics(topic, timeout=10).topics[topic].partitions
    consumer = Consumer(
        {
            **kafka.conf(kafka.super_user),
            "group.id": f"verify-{uuid.uuid4()}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    records: list[Message] = []
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        at_end: set[int] = set()
        deadline = time.monotonic() + timeout_s
        while len(at_end) < len(partitions):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: not at the end after {timeout_s}s")
            for msg in consumer.consume(500, timeout=0.5):
                err = msg.error()
                if err is None:
                    records.append(msg)
                elif err.code() == KafkaError._PARTITION_EOF:
                    at_end.add(msg.partition() or 0)
                else:
                    raise KafkaException(err)
    finally:
        consumer.close()
    return records


# --- the broker process ---------------------------------------------------------------------


@contextlib.contextmanager
def running_secure_kafka(env: dict[str, str]) -> Iterator[SecureKafka]:
    """``scripts/kafka-local --secure start`` (its code, in-process); stopped at the end only
    if it started it."""
    with running(Broker(env, secure=True)) as summary:
        yield SecureKafka.load(Path(json.loads(summary)["client_config"]))


# The README's ACL section: the bridge's grants, as its kafka-acls.sh commands.
README_ACL_SECTION = "### Kafka with SASL_SSL, TLS verification and ACLs"
DEFAULT_TOPICS = (
    "passentry.scans",
    "passentry.scans.dlq",
    "passentry.bridge.state",
    "passentry.bridge.coordination",
    "passentry.bridge.webhooks",
)
DEFAULT_GROUP = "passentry-bridge"


def readme_acl_commands() -> list[str]:
    """Every ``kafka-acls.sh`` command of the README's ACL section, continuation lines joined."""
    text = (ROOT / "README.md").read_text()
    start = text.index(README_ACL_SECTION)
    end = text.find("\n### ", start + len(README_ACL_SECTION))
    section = text[start : end if end > 0 else None]
    commands: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", section, re.S):
        for command in block.replace("\\\n", " ").splitlines():
            if command.strip().startswith("kafka-acls.sh"):
                commands.append(command.strip())
    return commands
