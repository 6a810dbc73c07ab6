package sdk

import (
	"unsafe"

	"github.com/lkedge/lkedge/sdk/internal/hostcall"
	"github.com/lkedge/lkedge/sdk/internal/jsonx"
)

// LazyEvent is an Event whose objects (room, egress, meet, ...) are
// decoded when the handler first asks for one, not before: most handlers
// read the type and one object, and in a wasm guest decoding all of a
// 1 KB event costs more than the rest of a call (BenchmarkParseEvent and
// BenchmarkParseLazy, run in wasm as host/plugin/internal/wasmexec says).
// Register a handler for it with HandleLazy. The fields are Event's; each
// object is a method that decodes it once and then returns the same value.
//
// Decoding an object yields exactly what ParseEvent puts in Event's field
// of the same name. Only what is decoded is checked: ParseLazy refuses a
// malformed document only as far as it reads it, and an object's method
// reports a fault inside that object. The host always sends well-formed
// JSON, so a handler sees an error only for an event that Event's types
// cannot hold (which ParseEvent would have refused as a whole).
type LazyEvent struct {
	Version    int
	ID         string
	Type       string
	Source     string
	ReceivedAt int64
	CreatedAt  int64
	// Raw is the event exactly as the host sent it. The objects are
	// decoded from it when asked for, so it must not be changed.
	Raw []byte

	// spans are the objects' JSON in the order they came: usually one
	// per object, more when a key repeats (each one then decodes over
	// what the one before left, as encoding/json does). spanBuf holds
	// them without an allocation of their own: in wasm, every byte of the
	// LazyEvent costs its share of an allocation and of the collections.
	spans   []span
	spanBuf [6]span

	room        *Room
	participant *Participant
	track       *Track
	egress      *Egress
	ingress     *Ingress
	meet        *Meet
	full        *Event
	// text holds ID, Type and Source when they fit, so that they cost
	// no allocation of their own (see ownStrings).
	text [64]byte

	// decoded has bit 1<<obj set once obj decoded without an error. An
	// error is not kept: asking again decodes again, and fails the same
	// way, which keeps the common case small.
	decoded uint8
}

// The objects a LazyEvent decodes on demand, by their key; objFull is the
// whole Event.
const (
	objRoom = iota
	objParticipant
	objTrack
	objEgress
	objIngress
	objMeet
	objFull
)

// objKeys are the objects' keys, for error messages.
var objKeys = [...]string{objRoom: "room", objParticipant: "participant", objTrack: "track", objEgress: "egressInfo", objIngress: "ingressInfo", objMeet: "meet"}

// span is where one object's JSON is in Raw.
type span struct {
	obj        uint8
	start, end int32
}

// get decodes the spans of obj into *p, with dec, unless it did already.
func get[T any](ev *LazyEvent, p **T, obj uint8, dec func(*jsonx.Decoder, *T) error) (*T, error) {
	if ev.decoded&(1<<obj) != 0 {
		return *p, nil
	}
	*p = nil
	for _, s := range ev.spans {
		if s.obj != obj {
			continue
		}
		d := jsonx.NewDecoder(ev.Raw[s.start:s.end])
		err := jsonx.Ptr(d, p, dec)
		if err == nil {
			err = d.End()
		}
		if err != nil {
			*p = nil
			return nil, wrap("decode event", jsonx.Within(err, int(s.start), objKeys[obj]))
		}
	}
	ev.decoded |= 1 << obj
	return *p, nil
}

// Room decodes the event's room; it is nil when the event has none.
func (ev *LazyEvent) Room() (*Room, error) {
	return get(ev, &ev.room, objRoom, decodeRoom)
}

// Participant decodes the event's participant, or returns nil.
func (ev *LazyEvent) Participant() (*Participant, error) {
	return get(ev, &ev.participant, objParticipant, decodeParticipant)
}

// Track decodes the event's track, or returns nil.
func (ev *LazyEvent) Track() (*Track, error) {
	return get(ev, &ev.track, objTrack, decodeTrack)
}

// Egress decodes the event's egressInfo, or returns nil.
func (ev *LazyEvent) Egress() (*Egress, error) {
	return get(ev, &ev.egress, objEgress, decodeEgress)
}

// Ingress decodes the event's ingressInfo, or returns nil.
func (ev *LazyEvent) Ingress() (*Ingress, error) {
	return get(ev, &ev.ingress, objIngress, decodeIngress)
}

// Meet decodes what lkedge's OpenVidu Meet logic added to the event, or
// returns nil.
func (ev *LazyEvent) Meet() (*Meet, error) {
	return get(ev, &ev.meet, objMeet, decodeMeet)
}

// Event decodes all of the event, as ParseEvent does (and checks all of
// it), for a handler that needs more than a few objects or an Event to
// pass on. Its objects are decoded anew, apart from the methods' ones.
func (ev *LazyEvent) Event() (*Event, error) {
	if ev.decoded&(1<<objFull) != 0 {
		return ev.full, nil
	}
	full, err := ParseEvent(ev.Raw)
	if err != nil {
		return nil, err
	}
	ev.full = full
	ev.decoded |= 1 << objFull
	return full, nil
}

// ParseLazy reads an event as the host sends it, for LazyEvent: the
// top-level fields now, each object when it is asked for, from raw, which
// must therefore stay unchanged while the LazyEvent is used.
func ParseLazy(raw []byte) (*LazyEvent, error) {
	ev := &LazyEvent{Raw: raw}
	ev.spans = ev.spanBuf[:0]
	// The aliasing decoder spares copying the whole document into a
	// string; the few strings kept are copied (ownStrings).
	d := jsonx.NewAliasingDecoder(raw)
	if !d.Null() {
		if err := decodeLazy(d, ev); err != nil {
			return nil, wrap("decode event", err)
		}
	}
	if err := d.End(); err != nil {
		return nil, wrap("decode event", err)
	}
	return ev, nil
}

// decodeLazy is decodeEvent for a LazyEvent: the same fields, with the
// objects kept as spans.
func decodeLazy(d *jsonx.Decoder, ev *LazyEvent) error {
	err := d.Object(eventNames, func(key string) error {
		switch key {
		case "version":
			return d.Int(&ev.Version)
		case "id":
			return d.String(&ev.ID)
		case "type":
			return d.String(&ev.Type)
		case "source":
			return d.String(&ev.Source)
		case "receivedAt":
			return d.Int64(&ev.ReceivedAt)
		case "createdAt":
			return d.Int64(&ev.CreatedAt)
		case "room":
			return ev.keep(d, objRoom)
		case "participant":
			return ev.keep(d, objParticipant)
		case "track":
			return ev.keep(d, objTrack)
		case "egressInfo":
			return ev.keep(d, objEgress)
		case "ingressInfo":
			return ev.keep(d, objIngress)
		case "meet":
			return ev.keep(d, objMeet)
		}
		return d.Unknown()
	})
	if err != nil {
		return err
	}
	ev.ownStrings()
	return nil
}

// ownStrings copies ID, Type and Source, which alias Raw as decoded, into
// memory of their own: ev.text if they fit, else one allocation for the
// three. No one writes to that memory after, as strings require.
func (ev *LazyEvent) ownStrings() {
	n := len(ev.ID) + len(ev.Type) + len(ev.Source)
	if n == 0 {
		return
	}
	b := ev.text[:0]
	if n > len(ev.text) {
		b = make([]byte, 0, n)
	}
	b = append(append(append(b, ev.ID...), ev.Type...), ev.Source...)
	all := unsafe.String(unsafe.SliceData(b), n)
	i, j := len(ev.ID), len(ev.ID)+len(ev.Type)
	ev.ID, ev.Type, ev.Source = all[:i], all[i:j], all[j:]
}

// keep records the object at d for obj's method to decode.
func (ev *LazyEvent) keep(d *jsonx.Decoder, obj uint8) error {
	raw, err := d.Span()
	if err != nil {
		return err
	}
	// int32 is enough: the host's events are far below 2 GiB, and so is
	// a wasm guest's memory.
	end := d.Offset()
	ev.spans = append(ev.spans, span{obj: obj, start: int32(end - len(raw)), end: int32(end)})
	return nil
}

// HandleLazy registers the plugin's handler, like Handle, for a handler
// that takes a LazyEvent: a call then costs only the objects the handler
// asks for. Call one of Handle and HandleLazy, once.
func HandleLazy(fn func(ev *LazyEvent) error) {
	hostcall.Handler = func() error {
		ev, err := ParseLazy(hostcall.Current().Event())
		if err != nil {
			return err
		}
		return fn(ev)
	}
}
