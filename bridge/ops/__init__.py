"""Running the bridge: ``metrics`` (Prometheus), ``logs`` (JSON or text lines),
``health`` and ``status_server`` (/metrics, /healthz, /readyz, /status), ``source_status``
(``passentry-bridge status``), ``progress`` (the commands' progress bars) and
``gc_policy`` (the garbage collector tuned for streaming)."""
