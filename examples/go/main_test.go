package main

import (
	"encoding/hex"
	"testing"
	"time"
)

func TestTheReleasedSchemaIsKnownByTheFingerprintOnTheWire(t *testing.T) {
	d, err := NewDecoder("../../schemas/passentry_scan", "")
	if err != nil {
		t.Fatal(err)
	}
	// `passentry-bridge schema show --fingerprint` for v1: the bytes after C3 01.
	want, _ := hex.DecodeString("d8cb8448677ada91")
	if d.byFingerprint[[8]byte(want)] == nil {
		t.Fatalf("v1 not found by fingerprint %x; known: %d schemas", want, len(d.byFingerprint))
	}
}

func TestDeduperDropsRepeatsWithinTheWindowAndForgetsOlderIds(t *testing.T) {
	d := NewDeduper(time.Minute)
	old := "0194d6a9-95b5-7556-896c-693a6ef61c4d"   // 2025-02-05T15:10:25.717Z
	newer := "0194d6b5-0000-7000-8000-000000000000" // ~50 minutes later
	for i, c := range []struct {
		id    string
		first bool
	}{{old, true}, {old, false}, {newer, true}, {old, true}, {newer, false}} {
		got, err := d.FirstTime(c.id)
		if err != nil || got != c.first {
			t.Fatalf("step %d: FirstTime(%s) = %v, %v; want %v", i, c.id, got, err, c.first)
		}
	}
	if d.Repeats != 2 || d.Forgotten != 1 {
		t.Fatalf("repeats %d forgotten %d", d.Repeats, d.Forgotten)
	}
	if _, err := d.FirstTime("not-a-uuid"); err == nil {
		t.Fatal("a non-UUIDv7 id was accepted")
	}
}
