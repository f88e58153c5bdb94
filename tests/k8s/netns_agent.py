"""The tests' hands inside the cluster's network namespace (run there by ``NetnsAgent``).

In netns mode Kafka, the simulator and the pods live at addresses that exist only inside the
namespace, so the test process, outside it, sends this agent JSON requests, one per line on
stdin, and reads JSON lines on stdout:

- ``{"id": n, "op": "http", "method": "GET", "url": ..., "timeout": s}`` answers
  ``{"id": n, "status": 200, "body": "..."}`` (or ``{"id": n, "error": "..."}``);
- ``{"id": n, "op": "watch", "bootstrap": ..., "topic": ...}`` starts a read_committed
  consumer of the topic from its beginning (waiting for the topic to exist) and answers
  ``{"id": n}``; from then on each record is an event ``{"event": "record", "topic",
  "partition", "offset", "scan_id", "source_id", "t"}`` (``t``: ``time.monotonic()``, the
  same clock as the test's) and each time a partition reaches its end ``{"event": "eof",
  "topic", "partition", "offset", "t"}``;
- ``{"id": n, "op": "ends", "bootstrap": ..., "topic": ...}`` answers ``{"id": n, "ends":
  {partition: high watermark}}``: where a watch that read everything stands.

It runs until stdin closes. Only the standard library and confluent_kafka (the project's
venv) are used; nothing here knows about Kubernetes.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

_out = threading.Lock()


def emit(message: dict[str, Any]) -> None:
    line = json.dumps(message)
    with _out:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def http(request: dict[str, Any]) -> dict[str, Any]:
    body = request.get("body")
    req = urllib.request.Request(
        request["url"],
        method=request.get("method", "GET"),
        data=None if body is None else body.encode(),
    )
    try:
        with urllib.request.urlopen(req, timeout=request.get("timeout", 5)) as resp:
            return {"status": resp.status, "body": resp.read().decode()}
    except urllib.error.HTTPError as exc:
        return {"status": exc.code, "body": exc.read().decode(errors="replace")}
    except (OSError, ValueError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def watch(bootstrap: str, topic: str, stop: threading.Event) -> None:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"k8s-test-watch-{time.time_ns()}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 50,
        }
    )
    try:
        while not stop.is_set():
            try:
                meta = consumer.list_topics(topic, timeout=5).topics[topic]
            except KafkaException:
                continue
            if meta.error is None and meta.partitions:
                break
            stop.wait(0.2)
        consumer.assign([TopicPartition(topic, p, 0) for p in sorted(meta.partitions)])
        while not stop.is_set():
            msg = consumer.poll(0.1)
            if msg is None:
                continue
            now = time.monotonic()
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    emit(
                        {
                            "event": "eof",
                            "topic": topic,
                            "partition": msg.partition(),
                            "offset": msg.offset(),
                            "t": now,
                        }
                    )
                    continue
                emit({"event": "error", "topic": topic, "error": err.str(), "t": now})
                continue
            headers = {k: v.decode() for k, v in msg.headers() or [] if v is not None}
            emit(
                {
                    "event": "record",
                    "topic": topic,
                    "partition": msg.partition(),
                    "offset": msg.offset(),
                    "scan_id": headers.get("scan-id"),
                    "source_id": headers.get("source-id"),
                    "t": now,
                }
            )
    finally:
        consumer.close()


def ends(request: dict[str, Any]) -> dict[str, Any]:
    consumer = Consumer(
        {"bootstrap.servers": request["bootstrap"], "group.id": f"k8s-test-ends-{time.time_ns()}"}
    )
    try:
        topic = request["topic"]
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        found = {}
        for p in sorted(partitions):
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            found[p] = high
        return {"ends": found}
    except KafkaException as exc:
        return {"error": str(exc)}
    finally:
        consumer.close()


def main() -> None:
    stop = threading.Event()
    threads: list[threading.Thread] = []
    for line in sys.stdin:
        request = json.loads(line)
        op = request.get("op")
        if op == "http":
            # one at a time would hold up a poll of the simulator behind a slow pod
            def answer(req: dict[str, Any] = request) -> None:
                emit({"id": req["id"], **http(req)})

            threading.Thread(target=answer, daemon=True).start()
        elif op == "ends":
            emit({"id": request["id"], **ends(request)})
        elif op == "watch":
            thread = threading.Thread(
                target=watch, args=(request["bootstrap"], request["topic"], stop), daemon=True
            )
            thread.start()
            threads.append(thread)
            emit({"id": request["id"]})
        else:
            emit({"id": request.get("id"), "error": f"unknown op {op!r}"})
    stop.set()
    for thread in threads:
        thread.join(timeout=10)


if __name__ == "__main__":
    main()
