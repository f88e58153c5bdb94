"""Fixtures for the simulator tests: in-process simulators and httpx clients for them."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from passentry_simulator import Faults, SimulatorConfig, SimulatorServer, WorldConfig
from tests.unit.simulator.receiver import Receiver

MakeServer = Callable[..., SimulatorServer]


@pytest.fixture
def make_server() -> Iterator[MakeServer]:
    """Factory: ``make_server(backlog=50, rate_limit=None, faults=Faults(...))``.

    Keyword arguments go to WorldConfig or SimulatorConfig by name. The rate limit is off
    unless asked for, so paging tests are not slowed down by it. Servers stop at teardown.
    """
    servers: list[SimulatorServer] = []

    def make(*, faults: Faults | None = None, **kwargs: object) -> SimulatorServer:
        world_fields = set(WorldConfig.__dataclass_fields__)
        world = {k: v for k, v in kwargs.items() if k in world_fields}
        rest = {k: v for k, v in kwargs.items() if k not in world_fields}
        world.setdefault("seed", 1234)
        world.setdefault("readers", 8)
        world.setdefault("passes", 60)
        rest.setdefault("rate_limit", None)
        config = SimulatorConfig(world=WorldConfig(**world), **rest)  # type: ignore[arg-type]
        server = SimulatorServer(config, faults).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def client_for() -> Iterator[Callable[..., httpx.Client]]:
    """Factory: an authenticated httpx client for a server; closed at teardown."""
    clients: list[httpx.Client] = []

    def make(
        server: SimulatorServer, *, token: str | None = None, timeout: float = 5.0
    ) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token if token is not None else server.token}"}
        client = httpx.Client(base_url=server.url, headers=headers, timeout=timeout)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def make_receiver() -> Iterator[Callable[..., Receiver]]:
    """Factory: ``make_receiver(secret, fmt="hex", answer=None)``, a started webhook receiver
    that checks signatures; stopped at teardown."""
    receivers: list[Receiver] = []

    def make(secret: str = "", fmt: str = "hex", answer: object = None) -> Receiver:
        receiver = Receiver(secret, fmt, answer).start()  # type: ignore[arg-type]
        receivers.append(receiver)
        return receiver

    yield make
    for receiver in receivers:
        receiver.stop()
