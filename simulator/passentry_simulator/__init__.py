"""A stand-in for PassEntry's scans API and its ``passScanned`` webhooks, faithful to its
docs, with injectable faults.

Run it with ``passentry-bridge simulate``; in tests use :class:`SimulatorServer` (a thread)
or :class:`SimulatorProcess` (a child process). Modules, in the order a request meets them:

- ``faults``: what goes wrong, and when (``Faults``, changeable at run time)
- ``ratelimit``: PassEntry's 10 requests/second per endpoint and method
- ``app``: the aiohttp routes, ``/api/v1/*`` and the ``/_sim/*`` admin routes
- ``subscriptions``: ``/api/v1/webhook-subscriptions``, and which subscription wants a scan
- ``store``: readers, passes, the traffic generator and the scans, pre-rendered
- ``webhooks``: signed ``passScanned`` deliveries of live scans, retried, bounded, faulty
- ``server`` / ``command``: the test runners and the CLI command
"""

from passentry_simulator.app import Simulator, SimulatorConfig, build_app
from passentry_simulator.faults import Faults, FaultsError
from passentry_simulator.ratelimit import SlidingWindowLimiter
from passentry_simulator.server import SimulatorProcess, SimulatorServer
from passentry_simulator.store import Scan, Store, WorldConfig
from passentry_simulator.subscriptions import Subscription, Subscriptions
from passentry_simulator.webhooks import WebhookConfig, WebhookSender

__all__ = [
    "Faults",
    "FaultsError",
    "Scan",
    "Simulator",
    "SimulatorConfig",
    "SimulatorProcess",
    "SimulatorServer",
    "SlidingWindowLimiter",
    "Store",
    "Subscription",
    "Subscriptions",
    "WebhookConfig",
    "WebhookSender",
    "WorldConfig",
    "build_app",
]
