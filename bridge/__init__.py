"""passentry-bridge: streams PassEntry pass scans into Kafka as Avro."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("passentry-bridge")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
