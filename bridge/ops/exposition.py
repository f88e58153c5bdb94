"""``/metrics`` in Prometheus's text format: what prometheus_client's ``generate_latest``
writes, byte for byte, without redoing each series' labels on every scrape.

``generate_latest`` makes a ``Sample`` with a fresh label dict for every line of every
scrape, then sorts, escapes and formats those labels again: about 11 µs a line, so a scrape
of a process running ten sources (about a thousand lines) cost 11-20 ms of CPU. A series'
name and labels never change after it first appears; only its value does. So the text of
each line up to its value is made once, when the series is first seen, and a scrape reads
the values and joins.

This reads the library's Counter, Gauge and Histogram objects below their public surface
(their children, values and bucket counts), so it only takes those classes, with their own
sampling, and names that need no escaping; any other collector (``Info``, the lag
collector), and a gauge whose value a function gives (``set_function``, as the webhook
receiver's open connections), is written by ``generate_latest`` itself, in its place.
``tests/unit/ops/test_exposition.py`` holds the output to ``generate_latest``'s, byte for byte,
on every metric the bridge has.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import metrics as client_metrics
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

__all__ = ["TextExposition"]

# The library's own number format (Go's), so that values read as generate_latest writes them.
_number = cast("Callable[[float], str]", floatToGoString)

# Names in the legacy character set are written as they are; others are escaped, which is
# left to the library.
_LEGACY_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LEGACY_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")

# The classes whose samples this writes itself: each with the library's own ``_child_samples``.
_KINDS: dict[type[Any], str] = {Counter: "counter", Gauge: "gauge", Histogram: "histogram"}


def _escape_help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def _escape_value(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    """``{a="1",b="2"}``, names in order, or nothing without labels."""
    text = ",".join(f'{name}="{_escape_value(value)}"' for name, value in sorted(pairs))
    return "{" + text + "}" if text else ""


@dataclass(slots=True)
class _Series:
    """One child's lines up to their values: ``name{labels} ``."""

    lines: tuple[str, ...]  # counter: _total; gauge: the value; histogram: buckets, _count, _sum
    created: str  # the _created line's, for counters and histograms


class _Family:
    """One Counter, Gauge or Histogram: its header, and its series' text as first seen."""

    def __init__(self, metric: Any, kind: str) -> None:
        self._metric = metric
        self._kind = kind
        name: str = metric._name
        self._name = name
        self._labelnames: tuple[str, ...] = tuple(metric._labelnames)
        shown = f"{name}_total" if kind == "counter" else name
        documentation = _escape_help(metric._documentation)
        self._header = f"# HELP {shown} {documentation}\n# TYPE {shown} {kind}\n"
        self._created_header = (
            f"# HELP {name}_created {documentation}\n# TYPE {name}_created gauge\n"
        )
        if kind == "histogram":
            self._bounds = [_number(b) for b in metric._upper_bounds]
            self._with_sum = metric._upper_bounds[0] >= 0
        self._series: dict[tuple[str, ...], _Series] = {}

    def write(self, out: list[str]) -> bool:
        """Append the family's lines; False, with nothing appended, where a child samples
        its own way (``Gauge.set_function`` replaces a child's sampling on the child)."""
        metric = self._metric
        if self._labelnames:
            with metric._lock:
                children = list(metric._metrics.items())
        else:
            children = [((), metric)]
        if any("_child_samples" in vars(child) for _, child in children):
            return False
        known, series = self._series, {}
        out.append(self._header)
        created: list[str] = []
        use_created = client_metrics._use_created
        for values, child in children:
            text = known.get(values) or self._new_series(values)
            series[values] = text
            if self._kind == "histogram":
                self._histogram(text, child, out)
            else:
                out.append(text.lines[0] + _number(child._value.get()) + "\n")
            if use_created and self._kind != "gauge":
                created.append(text.created + _number(child._created) + "\n")
        self._series = series  # series since removed (Gauge.remove) are let go
        if created:
            out.append(self._created_header)
            out += created
        return True

    def _histogram(self, text: _Series, child: Any, out: list[str]) -> None:
        lines = text.lines
        count = 0.0
        for at, bucket in enumerate(child._buckets):
            count += bucket.get()
            out.append(lines[at] + _number(count) + "\n")
        at = len(child._buckets)
        out.append(lines[at] + _number(count) + "\n")
        if self._with_sum:
            out.append(lines[at + 1] + _number(child._sum.get()) + "\n")

    def _new_series(self, values: tuple[str, ...]) -> _Series:
        pairs = list(zip(self._labelnames, values, strict=True))
        name, labels = self._name, _labels(pairs)
        if self._kind == "counter":
            lines: tuple[str, ...] = (f"{name}_total{labels} ",)
        elif self._kind == "gauge":
            lines = (f"{name}{labels} ",)
        else:
            buckets = [f"{name}_bucket{_labels([*pairs, ('le', b)])} " for b in self._bounds]
            lines = (*buckets, f"{name}_count{labels} ", f"{name}_sum{labels} ")
        return _Series(lines, f"{name}_created{labels} ")


class _One(Collector):
    """A registry of one collector, for ``generate_latest``."""

    def __init__(self, collector: Collector) -> None:
        self._collector = collector

    def collect(self) -> Iterable[Any]:
        return self._collector.collect()


class TextExposition:
    """Renders ``registry`` as ``generate_latest(registry)`` does."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry
        self._lock = threading.Lock()
        self._families: dict[Collector, _Family | None] = {}

    def render(self) -> bytes:
        registry = self._registry
        with registry._lock:
            collectors = list(registry._collector_to_names)
            with_target_info = bool(registry._target_info)
        if with_target_info:
            return generate_latest(registry)
        out: list[str] = []
        for collector in collectors:
            family = self._family(collector)
            if family is None or not family.write(out):
                out.append(generate_latest(_One(collector)).decode())
        return "".join(out).encode()

    def _family(self, collector: Collector) -> _Family | None:
        with self._lock:
            if collector not in self._families:
                self._families[collector] = _family_of(collector)
            return self._families[collector]


def _family_of(collector: Collector) -> _Family | None:
    """A fast writer for ``collector``, or None where the library should write it."""
    kinds = [(base, kind) for base, kind in _KINDS.items() if isinstance(collector, base)]
    if not kinds:
        return None
    base, kind = kinds[0]
    metric: Any = collector
    if type(metric)._child_samples is not base._child_samples:
        return None  # a subclass that samples its own way
    if not _LEGACY_NAME.match(metric._name) or not all(
        _LEGACY_LABEL.match(label) for label in metric._labelnames
    ):
        return None
    return _Family(metric, kind)
