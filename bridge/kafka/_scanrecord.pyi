from bridge.kafka.records import Headers, OutRecord
from bridge.passentry.models import PassResource, ReaderResource
from bridge.passentry.pages import Listed

def record(
    item: Listed,
    routes: dict[tuple[str, str], tuple[str, bytes, Headers]],
    objects: dict[int, tuple[PassResource | ReaderResource, bytes]],
    keys: dict[str, bytes],
    source: bytes,
    /,
) -> OutRecord | None: ...
