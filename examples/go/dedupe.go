package main

import (
	"container/heap"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
)

// Deduper drops repeats of a scan id: it remembers the ids created within a window of the
// newest scan seen (a UUIDv7 carries its creation time), so memory is bounded by one window
// of scans. Repeats come from two bridge sources with overlapping filters, and from this
// consumer reading again what it had not committed. An id older than the window cannot be
// told from a new one and passes (Forgotten counts it): only a durable check, a unique key
// on scanId in your store, catches a republished old range. The README's "For consumers"
// says more.
type Deduper struct {
	window    int64
	seen      map[string]struct{}
	byTime    idHeap
	newest    int64
	Repeats   int
	Forgotten int
}

func NewDeduper(window time.Duration) *Deduper {
	return &Deduper{window: window.Milliseconds(), seen: map[string]struct{}{}}
}

// FirstTime is true the first time an id is offered within the window.
func (d *Deduper) FirstTime(scanID string) (bool, error) {
	ms, err := uuid7Millis(scanID)
	if err != nil {
		return false, err
	}
	key := strings.ToLower(scanID)
	if _, ok := d.seen[key]; ok {
		d.Repeats++
		return false, nil
	}
	if ms < d.newest-d.window {
		d.Forgotten++
		return true, nil
	}
	d.seen[key] = struct{}{}
	heap.Push(&d.byTime, idAt{ms, key})
	if ms > d.newest {
		d.newest = ms
		for d.byTime.Len() > 0 && d.byTime[0].ms < d.newest-d.window {
			delete(d.seen, heap.Pop(&d.byTime).(idAt).id)
		}
	}
	return true, nil
}

func uuid7Millis(id string) (int64, error) {
	raw, err := hex.DecodeString(strings.ReplaceAll(id, "-", ""))
	if err != nil || len(raw) != 16 || len(id) != 36 || raw[6]>>4 != 7 {
		return 0, fmt.Errorf("scan id %q is not a UUIDv7", id)
	}
	var ms int64
	for _, b := range raw[:6] {
		ms = ms<<8 | int64(b)
	}
	return ms, nil
}

type idAt struct {
	ms int64
	id string
}

type idHeap []idAt

func (h idHeap) Len() int           { return len(h) }
func (h idHeap) Less(i, j int) bool { return h[i].ms < h[j].ms }
func (h idHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *idHeap) Push(x any)        { *h = append(*h, x.(idAt)) }
func (h *idHeap) Pop() any {
	old := *h
	last := old[len(old)-1]
	*h = old[:len(old)-1]
	return last
}
