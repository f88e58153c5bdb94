"""passentry-bridge: streams PassEntry pass scans into Kafka as Avro."""

# pyproject.toml's version, written here too (tests/unit/test_version.py keeps the two
# equal): asking importlib.metadata for it at import cost every command 30-90 ms of CPU.
__version__ = "0.1.0"

__all__ = ["__version__"]
