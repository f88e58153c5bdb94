"""The records' Avro: ``schemas`` (the versioned schemas shipped in the package),
``encoder`` and ``wire`` (a scan to its Avro body), ``framing`` (single-object encoding, or
``registry``'s Confluent wire format), ``compat`` and ``lock`` (the schema evolution gate),
and ``decoder`` (a record back to a dict, for ``tail`` and the consumers)."""
