"""The Kafka protocol, as much as the test beds need: readiness, roles, and a secure login.

Standard library only: scripts/kafka-local and scripts/kafka-cluster use it before the project's
virtualenv exists (CI starts the brokers beside ``make install``). Plain or TLS connections
(verified against a CA and the hostname), SASL SCRAM-SHA-512 (RFC 5802 over SaslHandshake v1
and SaslAuthenticate v1), and the requests: ApiVersions v0, Metadata v4-v8 (non-flexible),
FindCoordinator v1 and DescribeQuorum v0.

    python3 scripts/lib/kafka_wire.py probe HOST:PORT [CLIENT_JSON]

exits 0 when the broker answers a Metadata request listing at least one live broker (a KRaft
broker lists itself only once the controllers have registered and unfenced it). With
CLIENT_JSON (a secure instance's client.json of scripts/kafka-local) the connection is TLS and
logs in as its super user first.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import socket
import ssl
import struct
import sys
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Connection",
    "Login",
    "Metadata",
    "Partition",
    "find_coordinator",
    "metadata",
    "probe",
    "quorum_leader",
]


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def take(self, fmt: str) -> Any:
        (value,) = struct.unpack_from(fmt, self.data, self.at)
        self.at += struct.calcsize(fmt)
        return value

    def string(self) -> str | None:
        n = self.take(">h")
        if n < 0:
            return None
        text = self.data[self.at : self.at + n].decode()
        self.at += n
        return text

    def raw_bytes(self) -> bytes:
        n = self.take(">i")
        value = self.data[self.at : self.at + max(n, 0)]
        self.at += max(n, 0)
        return value

    def ints(self) -> list[int]:
        return [self.take(">i") for _ in range(self.take(">i"))]

    def uvarint(self) -> int:
        value = shift = 0
        while True:
            byte = self.data[self.at]
            self.at += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7

    def compact_string(self) -> str:
        n = self.uvarint() - 1
        text = self.data[self.at : self.at + n].decode()
        self.at += n
        return text


def _uvarint(value: int) -> bytes:
    out = b""
    while value > 0x7F:
        out += bytes([(value & 0x7F) | 0x80])
        value >>= 7
    return out + bytes([value])


def _kstr(text: str) -> bytes:
    raw = text.encode()
    return struct.pack(">h", len(raw)) + raw


@dataclass(frozen=True)
class Login:
    """TLS verified against ``ca_file`` and the host's name, then SCRAM-SHA-512."""

    ca_file: str
    user: str
    password: str

    @classmethod
    def from_client_json(cls, path: str) -> Login:
        """The super user of a secure scripts/kafka-local instance (its client.json)."""
        with open(path) as f:
            client = json.load(f)
        user = client["super_user"]
        return cls(client["ssl_ca_location"], user, client["users"][user])


class Connection:
    """One connection to a broker, request by request."""

    def __init__(
        self, address: str, timeout_s: float, *, client_id: str = "kafka-wire",
        login: Login | None = None,
    ) -> None:  # fmt: skip
        host, port = address.rsplit(":", 1)
        self._client_id = client_id
        self.sock = socket.create_connection((host, int(port)), timeout=timeout_s)
        self.correlation = 0
        try:
            if login is not None:
                context = ssl.create_default_context(cafile=login.ca_file)
                self.sock = context.wrap_socket(self.sock, server_hostname=host)
            self.sock.settimeout(timeout_s)
            self.versions = self._api_versions()
            if login is not None:
                self._scram_sha512(login.user, login.password)
        except BaseException:
            self.sock.close()  # a refused login or certificate leaves nothing open
            raise

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, api_key: int, version: int, body: bytes, flexible: bool = False) -> _Reader:
        """One request; ``flexible`` for versions with tagged fields (header v2, answer v1)."""
        self.correlation += 1
        header = struct.pack(">hhi", api_key, version, self.correlation) + _kstr(self._client_id)
        if flexible:
            header += b"\x00"  # no tagged fields
        message = header + body
        self.sock.sendall(struct.pack(">i", len(message)) + message)
        (size,) = struct.unpack(">i", self._exactly(4))
        reply = _Reader(self._exactly(size))
        if reply.take(">i") != self.correlation:
            raise OSError("answer to another request")
        if flexible:
            for _ in range(reply.uvarint()):  # tagged fields, none of them wanted
                reply.uvarint()
                reply.at += reply.uvarint()
        return reply

    def _exactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise OSError("connection closed")
            data += chunk
        return data

    def _api_versions(self) -> dict[int, tuple[int, int]]:
        reply = self.call(18, 0, b"")
        if reply.take(">h") != 0:
            raise OSError("ApiVersions refused")
        versions = {}
        for _ in range(reply.take(">i")):
            key, low, high = reply.take(">h"), reply.take(">h"), reply.take(">h")
            versions[key] = (low, high)
        return versions

    def _scram_sha512(self, user: str, password: str) -> None:
        """RFC 5802's exchange, each message in a SaslAuthenticate v1 request."""
        if self.call(17, 1, _kstr("SCRAM-SHA-512")).take(">h") != 0:
            raise OSError("SaslHandshake: SCRAM-SHA-512 not offered")

        def exchange(payload: str) -> str:
            data = payload.encode()
            reply = self.call(36, 1, struct.pack(">i", len(data)) + data)
            error = reply.take(">h")
            message = reply.string()
            answer = reply.raw_bytes()
            if error != 0:
                raise OSError(f"SaslAuthenticate refused ({error}): {message}")
            return answer.decode()

        name = user.replace("=", "=3D").replace(",", "=2C")
        nonce = base64.b64encode(os.urandom(24)).decode()
        first_bare = f"n={name},r={nonce}"
        server_first = exchange("n,," + first_bare)
        fields = dict(item.split("=", 1) for item in server_first.split(","))
        if not fields["r"].startswith(nonce):
            raise OSError("SCRAM: the server's nonce does not extend ours")
        salted = hashlib.pbkdf2_hmac(
            "sha512", password.encode(), base64.b64decode(fields["s"]), int(fields["i"])
        )

        def mac(key: bytes, text: bytes) -> bytes:
            return hmac.new(key, text, hashlib.sha512).digest()

        client_key = mac(salted, b"Client Key")
        final_bare = "c=" + base64.b64encode(b"n,,").decode() + ",r=" + fields["r"]
        auth_message = f"{first_bare},{server_first},{final_bare}".encode()
        signature = mac(hashlib.sha512(client_key).digest(), auth_message)
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        server_final = exchange(final_bare + ",p=" + base64.b64encode(proof).decode())
        expected = mac(mac(salted, b"Server Key"), auth_message)
        if server_final != "v=" + base64.b64encode(expected).decode():
            raise OSError("SCRAM: the server's signature does not match")


@dataclass(frozen=True)
class Partition:
    leader: int
    replicas: list[int]
    isr: list[int]


@dataclass(frozen=True)
class Metadata:
    brokers: list[int]
    topics: dict[str, dict[int, Partition]]


class NoMetadataVersion(OSError):
    """The broker speaks no Metadata version this module does (v4-v8)."""


def metadata(
    address: str, topics: list[str] | None = None, timeout_s: float = 3.0, *,
    login: Login | None = None, client_id: str = "kafka-wire",
) -> Metadata:  # fmt: skip
    """A Metadata request (a non-flexible version, 4 to 8) for ``topics``, or for all."""
    with Connection(address, timeout_s, client_id=client_id, login=login) as conn:
        low, high = conn.versions.get(3, (0, -1))
        version = min(high, 8)
        if version < max(low, 4):
            raise NoMetadataVersion(f"the broker offers Metadata v{low}-v{high}, not v4-v8")
        if topics is None:
            body = struct.pack(">i", -1)
        else:
            body = struct.pack(">i", len(topics)) + b"".join(_kstr(t) for t in topics)
        body += b"\x00"  # allow_auto_topic_creation
        if version >= 8:
            body += b"\x00\x00"  # no authorized operations
        reply = conn.call(3, version, body)
    reply.take(">i")  # throttle_time_ms
    brokers = []
    for _ in range(reply.take(">i")):
        brokers.append(reply.take(">i"))
        reply.string()
        reply.take(">i")
        reply.string()  # rack
    reply.string()  # cluster id
    reply.take(">i")  # controller id (in KRaft a random broker, not the active controller)
    found: dict[str, dict[int, Partition]] = {}
    for _ in range(reply.take(">i")):
        error, name = reply.take(">h"), reply.string()
        reply.take(">b")  # is_internal
        partitions = {}
        for _ in range(reply.take(">i")):
            reply.take(">h")
            index, leader = reply.take(">i"), reply.take(">i")
            if version >= 7:
                reply.take(">i")  # leader epoch
            replicas, isr = reply.ints(), reply.ints()
            if version >= 5:
                reply.ints()  # offline replicas
            partitions[index] = Partition(leader, replicas, isr)
        if version >= 8:
            reply.take(">i")
        if error == 0 and name is not None:
            found[name] = partitions
    return Metadata(sorted(brokers), found)


def find_coordinator(
    address: str, key: str, key_type: int, timeout_s: float = 3.0, *, client_id: str = "kafka-wire"
) -> int | None:
    """The node a broker names as the coordinator of ``key`` (FindCoordinator v1; key type
    0 a group, 1 a transactional id); None while it has none to name."""
    with Connection(address, timeout_s, client_id=client_id) as conn:
        low, high = conn.versions.get(10, (0, -1))
        if not low <= 1 <= high:
            raise OSError(f"the broker offers FindCoordinator v{low}-v{high}, not v1")
        reply = conn.call(10, 1, _kstr(key) + struct.pack(">b", key_type))
    reply.take(">i")  # throttle_time_ms
    error = reply.take(">h")
    reply.string()
    node: int = reply.take(">i")
    return node if error == 0 else None


def quorum_leader(
    address: str, timeout_s: float = 3.0, *, client_id: str = "kafka-wire"
) -> int | None:
    """The active KRaft controller (the leader of the metadata quorum), as DescribeQuorum v0
    through a broker says; None while there is none. (Metadata's controller id is a random
    broker under KRaft.)"""
    with Connection(address, timeout_s, client_id=client_id) as conn:
        low, high = conn.versions.get(55, (0, -1))
        if not low <= 0 <= high:
            raise OSError(f"the broker offers DescribeQuorum v{low}-v{high}, not v0")
        name = b"__cluster_metadata"
        body = (
            _uvarint(2) + _uvarint(len(name) + 1) + name  # one topic
            + _uvarint(2) + struct.pack(">i", 0) + b"\x00"  # its partition 0
            + b"\x00" + b"\x00"  # tagged fields of the topic and of the request
        )  # fmt: skip
        reply = conn.call(55, 0, body, flexible=True)
    if reply.take(">h") != 0 or reply.uvarint() < 2:
        return None
    reply.compact_string()
    if reply.uvarint() < 2:
        return None
    reply.take(">i")  # partition index
    error, leader = reply.take(">h"), reply.take(">i")
    return leader if error == 0 and leader >= 0 else None


def probe(address: str, login: Login | None = None, client_id: str = "kafka-wire") -> bool:
    """The broker answers, and lists at least one live broker."""
    try:
        return bool(metadata(address, [], login=login, client_id=client_id).brokers)
    except NoMetadataVersion:
        return True  # a broker too new for v4-v8 answered ApiVersions (and the login)
    except (OSError, ValueError, struct.error):
        return False


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3) or argv[0] != "probe":
        print(__doc__, file=sys.stderr)
        return 2
    login = Login.from_client_json(argv[2]) if len(argv) == 3 else None
    return 0 if probe(argv[1], login, client_id="kafka-local") else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
