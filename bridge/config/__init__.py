"""Settings, read from the environment and optionally a YAML file, validated at start-up.

Four groups, each with its own environment prefix so the names read naturally in a pod
spec: ``PASSENTRY_*`` (the source), ``KAFKA_*`` (the sink), ``BRIDGE_*`` (the bridge
itself) and ``SCHEMA_REGISTRY_*``. Nested fields use ``__``
(``PASSENTRY_FILTERS__STATUS=failed``). An environment variable wins over the YAML file, so
a secret injected as env overrides a ConfigMap. A bad value stops start-up with the
setting's name in the message; the API token is a ``Secret`` and never appears in a
message or log line.

``models`` holds what the settings are; ``convert`` how given values become them (and what
is wrong with them); ``loading`` how they are read and merged.
"""

from bridge.config.convert import Secret
from bridge.config.loading import load_config, load_file, load_registry_settings
from bridge.config.models import (
    SOURCE_ID_PATTERN,
    TOPIC_PATTERN,
    WEBHOOK_SECRET_MIN_BYTES,
    BridgeSettings,
    Config,
    KafkaSettings,
    PassEntrySettings,
    RegistrySettings,
    ScanFilters,
    SourceConfig,
    SourceId,
    TopicName,
)

__all__ = [
    "SOURCE_ID_PATTERN",
    "TOPIC_PATTERN",
    "WEBHOOK_SECRET_MIN_BYTES",
    "BridgeSettings",
    "Config",
    "KafkaSettings",
    "PassEntrySettings",
    "RegistrySettings",
    "ScanFilters",
    "Secret",
    "SourceConfig",
    "SourceId",
    "TopicName",
    "load_config",
    "load_file",
    "load_registry_settings",
]
