package com.passentry.examples;

import java.time.Duration;
import java.util.HashSet;
import java.util.PriorityQueue;
import java.util.Set;
import java.util.UUID;

/**
 * Drops repeats of a scan id: remembers the ids created within a window of the newest scan
 * seen (a UUIDv7 carries its creation time), so memory is bounded by one window of scans.
 * Repeats come from two bridge sources with overlapping filters, and from this consumer reading
 * again what it had not committed. An id older than the window cannot be told from a new one
 * and passes ({@link #forgotten} counts it): only a durable check, a unique key on scanId in
 * your store, catches a republished old range.
 */
final class ScanDeduper {
  private record IdAt(long millis, UUID id) {}

  private final long windowMillis;
  private final Set<UUID> seen = new HashSet<>();
  private final PriorityQueue<IdAt> byTime = new PriorityQueue<>((a, b) -> Long.compare(a.millis, b.millis));
  private long newest;
  long repeats;
  long forgotten;

  ScanDeduper(Duration window) {
    this.windowMillis = window.toMillis();
  }

  /** True the first time an id is offered within the window. */
  boolean firstTime(UUID scanId) {
    if (scanId.version() != 7) {
      throw new IllegalArgumentException("scan id " + scanId + " is not a UUIDv7");
    }
    long millis = scanId.getMostSignificantBits() >>> 16;
    if (seen.contains(scanId)) {
      repeats++;
      return false;
    }
    if (millis < newest - windowMillis) {
      forgotten++;
      return true;
    }
    seen.add(scanId);
    byTime.add(new IdAt(millis, scanId));
    if (millis > newest) {
      newest = millis;
      while (!byTime.isEmpty() && byTime.peek().millis < newest - windowMillis) {
        seen.remove(byTime.poll().id);
      }
    }
    return true;
  }
}
