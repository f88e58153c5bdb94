from collections.abc import Callable
from datetime import datetime
from typing import Any

def write(
    prefix: bytes,
    scan_id: str,
    created_ms: int,
    scanned_at: datetime | int | None,
    scan_type: str,
    scan_value: str | None,
    validation_type: str,
    status: str,
    status_detail: str | None,
    reader_id: str,
    pass_id: str | None,
    source: bytes,
    pass_bytes: bytes,
    reader_bytes: bytes,
    /,
) -> bytes: ...
def write_pass(
    id: str,
    ext_id: str | None,
    pass_type: str | None,
    status: str | None,
    device_type: str | None,
    pass_template_uuid: str | None,
    pass_template_name: str | None,
    download_url: str | None,
    nfc: str | None,
    barcode: bytes,
    pass_content: dict[str, Any] | None,
    created_at: datetime | int | None,
    added_at: datetime | int | None,
    removed_at: datetime | int | None,
    deactivated_at: datetime | int | None,
    stringify: Callable[[Any], str],
    to_millis: Callable[[datetime], int | None],
    /,
) -> bytes: ...
