from datetime import datetime

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
