"""A missing ACL, as one error that says which grant fixes it.

Kafka answers a denied operation with an error code (``TOPIC_``, ``GROUP_`` or
``TRANSACTIONAL_ID_AUTHORIZATION_FAILED``) at whichever call needed it, and librdkafka's text
rarely names the resource: a commit says "Failed to add partition(s) to transaction", a
restore reader "Fetch from broker failed". The caller knows what it was doing, so it maps the
code here to a :class:`KafkaAuthorizationError` naming the principal, the resource, the
operation and the ``kafka-acls.sh`` grant, in the README's terms (its section on ACLs lists
the same grants, and the secure suite runs them).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from confluent_kafka import KafkaError

from bridge.errors import BridgeError, KafkaAuthorizationError, KafkaRetriableError

__all__ = [
    "INBOX_GROUPS",
    "INBOX_GROUP_PREFIX",
    "README_ACLS",
    "RESTORE_GROUP_PREFIX",
    "AclGrant",
    "denied",
    "is_authorization",
    "principal",
    "reading_error",
    "topics_grant",
    "transactional_id_grant",
]

README_ACLS = "see the README: Kafka with SASL_SSL, TLS verification and ACLs"
# The start-up readers' throwaway groups, the audit's, and each source's inbox group share a
# prefix each: one prefixed grant covers each kind.
RESTORE_GROUP_PREFIX = "passentry-bridge-restore-"
AUDIT_GROUP_PREFIX = "passentry-bridge-audit-"
INBOX_GROUP_PREFIX = "passentry-bridge.inbox."

ResourceKind = Literal["topic", "group", "transactional-id"]
_AUTHORIZATION = {
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.GROUP_AUTHORIZATION_FAILED,
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
}
# What the bridge derives from a source's transactional id: the repairs of audits and
# backfills, and `check`'s probe. A prefixed grant on the live id covers them.
_DERIVED_ID = re.compile(r"\.(?:repair|check)$")


@dataclass(frozen=True, slots=True)
class AclGrant:
    """``--operation ... --<kind> name ... [--resource-pattern-type prefixed]``."""

    kind: ResourceKind
    names: tuple[str, ...]
    operations: tuple[str, ...]
    prefixed: bool = False

    def __str__(self) -> str:
        *most, last = self.operations
        ops = f"{', '.join(most)} and {last}" if most else last
        flags = " ".join(f"--{self.kind} {name}" for name in self.names)
        if self.prefixed:
            flags += " --resource-pattern-type prefixed"
        return f"{ops} on {flags}"


def principal(conf: Mapping[str, Any]) -> str:
    """Who the broker sees, as far as the client settings tell (never a secret)."""
    user = conf.get("sasl.username")
    if user:
        return f"User:{user}"
    if conf.get("ssl.certificate.location"):
        return "the principal of the certificate in KAFKA_SSL_CERTIFICATE_LOCATION"
    return "User:ANONYMOUS"


def denied(
    conf: Mapping[str, Any], what: str, grant: AclGrant, code: str, detail: str = ""
) -> KafkaAuthorizationError:
    """``<principal> may not <what> (<code>[; detail]): grant it <grant> (see the README)``."""
    why = f"{code}; {detail}" if detail else code
    return KafkaAuthorizationError(
        f"{principal(conf)} may not {what} ({why}): grant it {grant} ({README_ACLS})",
        resource=grant.kind,
        name=",".join(grant.names),
        operations=grant.operations,
    )


# The inbox reader's consumer looks up its group's coordinator (FindCoordinator: Describe),
# and reads the position versions before checkpoints carried it kept there when a source's
# checkpoint has none (OffsetFetch: Describe). Nothing is committed to the group.
INBOX_GROUPS = AclGrant("group", (INBOX_GROUP_PREFIX,), ("Describe",), prefixed=True)


def transactional_id_grant(transactional_id: str) -> AclGrant:
    """The README's grant for a source's transactional ids: prefixed on the live one."""
    live = _DERIVED_ID.sub("", transactional_id)
    return AclGrant("transactional-id", (live,), ("Write", "Describe"), prefixed=True)


def topics_grant(topics: Iterable[str], *operations: str) -> AclGrant:
    return AclGrant("topic", tuple(sorted(set(topics))), operations)


def reading_error(
    conf: Mapping[str, Any], err: KafkaError, topic: str, group: AclGrant
) -> BridgeError:
    """What an error met while reading ``topic`` means: a missing Read on the topic, a
    missing grant on the reader's ``group``, or something worth retrying."""
    code = err.code()
    if code == KafkaError.TOPIC_AUTHORIZATION_FAILED:
        return denied(
            conf, f"read topic {topic}", topics_grant([topic], "Read", "Describe"), err.name()
        )
    if code == KafkaError.GROUP_AUTHORIZATION_FAILED:
        what = f"use the consumer group{'s' if group.prefixed else ''} {group.names[0]}"
        return denied(conf, what + ("*" if group.prefixed else ""), group, err.name())
    return KafkaRetriableError(f"reading {topic}: {err.str()}")


def is_authorization(err: KafkaError) -> bool:
    return err.code() in _AUTHORIZATION
