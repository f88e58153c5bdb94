"""PassEntry's scans API: ``client`` (httpx, the request budget, retries), ``ratelimit``,
``models`` and ``pages`` (a page decoded, scan by scan or whole), ``slices`` (time slices
read completely: walk, re-walk, read-ahead, overlap and sweep)."""
