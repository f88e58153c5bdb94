"""Kafka, as the bridge uses it. Writing: ``records`` (scan records, headers, dead letters),
``scan_records`` (the page-at-a-time fast path), ``routing`` (topic per scan), ``producer``
(one transaction per chunk, checkpoint inside), ``topics``. Reading back: ``checkpoint``
(the cursor), ``readback`` (a partition to its end, past open transactions), ``tailing``.
Sharing the sources: ``membership`` (the consumer group), ``owners``. Access: ``access``
(a refused login or certificate, diagnosed), ``acl`` and ``permissions`` (a missing grant,
named), ``retention``."""
