"""A stand-in for PassEntry's scans API, faithful to its docs, with injectable faults.

Run it with ``passentry-bridge simulate``; in tests use :class:`SimulatorServer` (a thread)
or :class:`SimulatorProcess` (a child process). Modules, in the order a request meets them:

- ``faults``: what goes wrong, and when (``Faults``, changeable at run time)
- ``ratelimit``: PassEntry's 10 requests/second per endpoint and method
- ``app``: the aiohttp routes, ``/api/v1/*`` and the ``/_sim/*`` admin routes
- ``store``: readers, passes, the traffic generator and the scans, pre-rendered
- ``server`` / ``command``: the test runners and the CLI command
"""

from bridge.simulator.app import Simulator, SimulatorConfig, build_app
from bridge.simulator.faults import Faults, FaultsError
from bridge.simulator.ratelimit import SlidingWindowLimiter
from bridge.simulator.server import SimulatorProcess, SimulatorServer
from bridge.simulator.store import Scan, Store, WorldConfig

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
    "WorldConfig",
    "build_app",
]
