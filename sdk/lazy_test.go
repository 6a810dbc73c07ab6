package sdk

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"reflect"
	"strings"
	"testing"
)

// lazyAll reads everything through ParseLazy and the LazyEvent's methods,
// in an order that depends on the event (an object's outcome must not
// depend on which was asked for first): the Event it would make, and the
// first error.
func lazyAll(raw []byte) (*Event, error) {
	lz, err := ParseLazy(raw)
	if err != nil {
		return nil, err
	}
	ev := &Event{Version: lz.Version, ID: lz.ID, Type: lz.Type, Source: lz.Source,
		ReceivedAt: lz.ReceivedAt, CreatedAt: lz.CreatedAt, Raw: lz.Raw}
	getters := []func() error{
		func() (err error) { ev.Room, err = lz.Room(); return },
		func() (err error) { ev.Participant, err = lz.Participant(); return },
		func() (err error) { ev.Track, err = lz.Track(); return },
		func() (err error) { ev.Egress, err = lz.Egress(); return },
		func() (err error) { ev.Ingress, err = lz.Ingress(); return },
		func() (err error) { ev.Meet, err = lz.Meet(); return },
	}
	first := len(raw) % len(getters)
	for i := range getters {
		if err := getters[(first+i)%len(getters)](); err != nil {
			return nil, err
		}
	}
	return ev, nil
}

// sameAsParseEvent fails unless the lazy decoder agrees with ParseEvent
// on raw: everything ParseEvent decodes, the LazyEvent decodes the same,
// and well-formed JSON that ParseEvent refuses fails somewhere in the
// LazyEvent too (the host only sends well-formed JSON). Malformed JSON
// may pass where the LazyEvent does not look, but never in Event().
func sameAsParseEvent(t testing.TB, raw []byte) {
	t.Helper()
	want, wantErr := ParseEvent(raw)
	got, gotErr := lazyAll(raw)
	switch {
	case wantErr == nil && gotErr != nil:
		t.Fatalf("ParseLazy(%q): error %v, ParseEvent none", raw, gotErr)
	case wantErr == nil && !reflect.DeepEqual(got, want):
		t.Fatalf("ParseLazy(%q):\n got %s\nwant %s", raw, dump(got), dump(want))
	case wantErr != nil && gotErr == nil && json.Valid(raw):
		t.Fatalf("ParseLazy(%q) took well-formed JSON that ParseEvent refuses: %v", raw, wantErr)
	}
	if lz, err := ParseLazy(raw); err == nil {
		full, err := lz.Event()
		if (err != nil) != (wantErr != nil) || !reflect.DeepEqual(full, want) {
			t.Fatalf("LazyEvent(%q).Event() = %s, %v\nwant %s, %v", raw, dump(full), err, dump(want), wantErr)
		}
	}
}

func TestParseLazyMatchesParseEvent(t *testing.T) {
	for name, raw := range goldenEvents(t) {
		t.Run(name, func(t *testing.T) { sameAsParseEvent(t, raw) })
	}
	for i, raw := range append(edgeCases, lazyEdgeCases...) {
		t.Run(fmt.Sprintf("edge%d", i), func(t *testing.T) { sameAsParseEvent(t, []byte(raw)) })
	}
}

// lazyEdgeCases are the cases of the span scanner: brackets and escapes
// inside strings, objects left unbalanced, and nesting at the limit.
var lazyEdgeCases = []string{
	`{"room":{"name":"a}b{c]d[e"}}`, `{"room":{"name":"a\"}b"}}`, `{"room":{"name":"a\\"},"id":"x"}`,
	`{"room":{"name":"\\\"}\\"}}`, `{"room":{"name":"` + strings.Repeat(`\"`, 20) + `}"}}`,
	`{"egressInfo":{"fileResults":[{"filename":"[{"}]}}`, `{"egressInfo":{"status":"EGRESS_ACTIVE"}`,
	`{"meet":{"owned":true]}`, `{"meet":[}`, `{"meet":{"roomId":"unterminated}}`, `{"meet":{"roomId":"esc\`,
	`{"room":  {"name":"a"}  ,"id":"b"}`, `{"room":{"name":"a"},"Room":{"sid":"b"},"ROOM":null,"room":{"name":"c"}}`,
	`{"meet":{"recording":{"a":"}"}},"meet":{"owned":true}}`, `{"room":{},"room":{},"room":{},"room":{},"room":{"name":"5th"}}`,
	`{"egressInfo":` + strings.Repeat("[", 9999) + strings.Repeat("]", 9999) + `}`,
	`{"egressInfo":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `}`,
	`{"egressInfo":{"roomComposite":` + strings.Repeat(`{"a":`, 9997) + `1` + strings.Repeat("}", 9997) + `}}`,
	`{"egressInfo":{"roomComposite":` + strings.Repeat(`{"a":`, 9998) + `1` + strings.Repeat("}", 9998) + `}}`,
}

// TestParseLazyMutations is TestParseEventMutations for the lazy decoder.
func TestParseLazyMutations(t *testing.T) {
	r := rand.New(rand.NewSource(2))
	const alphabet = "{}[],:\"\\ \n0123456789-+.eEtrufalsn\x00\x1f\x7f\xc3\xa9\xff"
	for name, raw := range goldenEvents(t) {
		for range 1500 {
			sameAsParseEvent(t, mutate(r, raw, alphabet))
			if t.Failed() {
				t.Fatalf("a mutation of %s", name)
			}
		}
	}
}

func FuzzParseLazy(f *testing.F) {
	for _, raw := range goldenEvents(f) {
		f.Add(raw)
	}
	for _, raw := range append(edgeCases, lazyEdgeCases...) {
		f.Add([]byte(raw))
	}
	f.Fuzz(func(t *testing.T, raw []byte) { sameAsParseEvent(t, raw) })
}

// TestLazyErrorsSayWhere checks that an object's error names the field
// and its offset in the whole event, as ParseEvent's does.
func TestLazyErrorsSayWhere(t *testing.T) {
	for _, raw := range []string{
		`{"egressInfo":{"fileResults":[{"size":"1"},{"size":"x"}]}}`,
		`{"id":"a", "meet" : {"owned":"yes"}}`,
		`{"room":{"name":"a"},"room":{"emptyTimeout":-1}}`,
		`{"track":{"sid":"a",}}`,
	} {
		_, want := ParseEvent([]byte(raw))
		_, got := lazyAll([]byte(raw))
		if want == nil || got == nil || got.Error() != want.Error() {
			t.Errorf("%s:\n lazy error %v\nParseEvent %v", raw, got, want)
		}
	}
}

// TestLazyDecodesOnce checks that an object is decoded on first use only,
// and that the LazyEvent holds no string that aliases Raw.
func TestLazyDecodesOnce(t *testing.T) {
	raw := []byte(`{"id":"EV_1","type":"egress_ended","egressInfo":{"roomName":"r"},"meet":{"roomId":"m"}}`)
	lz, err := ParseLazy(raw)
	if err != nil {
		t.Fatal(err)
	}
	e1, _ := lz.Egress()
	e2, _ := lz.Egress()
	if e1 == nil || e1 != e2 {
		t.Fatalf("Egress() = %p then %p, want the same object", e1, e2)
	}
	if r, err := lz.Room(); r != nil || err != nil {
		t.Fatalf("Room() = %v, %v for an event without a room", r, err)
	}
	copy(raw, bytes.Repeat([]byte("#"), len(raw)))
	if lz.ID != "EV_1" || lz.Type != "egress_ended" || e1.RoomName != "r" {
		t.Fatalf("fields changed with Raw: %q %q %q", lz.ID, lz.Type, e1.RoomName)
	}
}

// BenchmarkParseLazy is what a LazyEvent costs a handler that reads the
// top level only, then one object, then all (compare BenchmarkParseEvent,
// and run both in wasm: see host/plugin/internal/wasmexec).
func BenchmarkParseLazy(b *testing.B) {
	raw, err := os.ReadFile("../testdata/events/egress_updated.event.json")
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		read func(*LazyEvent) error
	}{
		{"top", func(*LazyEvent) error { return nil }},
		{"meet", func(lz *LazyEvent) error { _, err := lz.Meet(); return err }},
		{"egress", func(lz *LazyEvent) error { _, err := lz.Egress(); return err }},
		{"all", func(lz *LazyEvent) error {
			for _, get := range []func() error{
				func() error { _, err := lz.Room(); return err },
				func() error { _, err := lz.Participant(); return err },
				func() error { _, err := lz.Track(); return err },
				func() error { _, err := lz.Egress(); return err },
				func() error { _, err := lz.Ingress(); return err },
				func() error { _, err := lz.Meet(); return err },
			} {
				if err := get(); err != nil {
					return err
				}
			}
			return nil
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				lz, err := ParseLazy(raw)
				if err != nil {
					b.Fatal(err)
				}
				if err := bc.read(lz); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
