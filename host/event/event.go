// Package event is lkedge's normalized event: one LiveKit webhook (or one
// event lkedge derives, such as roomFinished) plus what lkedge learned while
// handling it. Its JSON form, documented in docs/events.md, is what plugins
// receive; it is versioned so plugins can rely on it.
package event

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/livekit/protocol/livekit"
	"github.com/livekit/protocol/utils/protojson"
	"google.golang.org/protobuf/proto"
)

// Version is the version of the JSON event model. It changes only when a
// field changes meaning or disappears; new fields do not change it.
const Version = 1

// Source tells who produced an event.
type Source string

// Event sources.
const (
	SourceLiveKit Source = "livekit"
	SourceLKEdge  Source = "lkedge"
)

// Types of the events lkedge itself emits.
const (
	// TypeRoomFinished follows a Meet room's room_finished once lkedge has
	// released its recording lock and, if it was marked, deleted it.
	TypeRoomFinished = "roomFinished"
)

// Event is one normalized event.
type Event struct {
	// ID is unique per event: LiveKit's event id, or for derived events the
	// id of the LiveKit event it came from plus its type.
	ID         string
	Type       string
	Source     Source
	ReceivedAt time.Time
	// Meet is what the OpenVidu Meet logic derived; nil until it ran.
	Meet *Meet

	// wh is the verified webhook the event is or comes from.
	wh *webhook
}

// webhook is a LiveKit webhook as received: its head, read when it
// arrives, and the whole message, decoded on first use. Events derived
// from a webhook share it.
type webhook struct {
	head
	body []byte
	once sync.Once
	msg  *livekit.WebhookEvent
	err  error
}

// Meet is lkedge's view of an event in OpenVidu Meet terms.
type Meet struct {
	// Owned tells whether the room belongs to OpenVidu Meet (§4).
	Owned bool `json:"owned"`
	// RoomID is the Meet room id (the LiveKit room name).
	RoomID string `json:"roomId,omitempty"`
	// Recording is this event's recording view of a recording egress
	// (§6.2), byte for byte what is stored as recording metadata unless the
	// event is Stale.
	Recording json.RawMessage `json:"recording,omitempty"`
	// Deleted is set on roomFinished when lkedge deleted the room because it
	// was marked for deletion.
	Deleted bool `json:"deleted,omitempty"`
	// Stale is set when the event is older than the recording state already
	// stored (it arrived late): the metadata was not rewritten and no data
	// message was sent; plugins should usually not notify about it.
	Stale bool `json:"stale,omitempty"`
}

var unmarshalOpts = protojson.UnmarshalOptions{DiscardUnknown: true, AllowPartial: true}

// ErrNotWebhook is wrapped by FromWebhook's error for JSON that is not a
// LiveKit webhook: it has no event name, or one LiveKit would not write.
var ErrNotWebhook = errors.New("not a LiveKit webhook")

// ErrMalformed is wrapped by the errors of FromWebhook and Event.LiveKit
// for a body that is not a LiveKit webhook in protojson. Such a body stays
// malformed: retrying cannot help.
var ErrMalformed = errors.New("malformed webhook")

// maxTypeLen bounds an event name; LiveKit's longest is 30 bytes.
const maxTypeLen = 64

// checkType accepts the event names LiveKit writes, and those it may add
// later in the same form: lower-case words joined by single underscores
// (room_started, agent_job_pending). Names are not checked against a list,
// because LiveKit adds events (agent_job_* came after OpenVidu Meet's
// version) and its sender does not retry a 4xx: refusing a new name would
// lose the event.
func checkType(typ string) error {
	if typ == "" {
		return fmt.Errorf("%w: no event name", ErrNotWebhook)
	}
	if len(typ) > maxTypeLen {
		return fmt.Errorf("%w: event name of %d bytes, over %d", ErrNotWebhook, len(typ), maxTypeLen)
	}
	for i := 0; i < len(typ); i++ {
		c := typ[i]
		word := 'a' <= c && c <= 'z' || i > 0 && typ[i-1] != '_' && '0' <= c && c <= '9'
		joint := c == '_' && i > 0 && i < len(typ)-1 && typ[i-1] != '_'
		if !word && !joint {
			return fmt.Errorf("%w: event name %q is not lower-case words joined by _", ErrNotWebhook, typ)
		}
	}
	return nil
}

// FromWebhook reads a verified LiveKit webhook body (protojson, unknown
// fields ignored as LiveKit's own receiver does). A body without an event id
// gets one derived from its content, so duplicates are still recognized.
// JSON without a LiveKit event name is refused with ErrNotWebhook, other
// malformed JSON with ErrMalformed. FromWebhook keeps its own copy of body.
//
// Only the fields that name the event and its room are read here; the
// rest is decoded by the first call of Event.LiveKit, so an event that
// neither OpenVidu Meet nor a plugin reads is never decoded in full. Such a
// body is checked as JSON, not against LiveKit's message: one that is valid
// JSON but not valid protojson is accepted, and refused by Event.LiveKit.
func FromWebhook(body []byte, receivedAt time.Time) (*Event, error) {
	h, err := scanHead(body)
	if err != nil {
		return nil, fmt.Errorf("decode webhook: %w", err)
	}
	if err := checkType(h.event); err != nil {
		return nil, err
	}
	if h.id == "" {
		sum := sha256.Sum256(body)
		h.id = "sha256:" + hex.EncodeToString(sum[:16])
	}
	return &Event{ID: h.id, Type: h.event, Source: SourceLiveKit, ReceivedAt: receivedAt, wh: &webhook{head: h, body: bytes.Clone(body)}}, nil
}

// LiveKit returns the verified webhook the event is or comes from, decoded
// in full on the first call; it is shared, and must not be changed. An
// error wraps ErrMalformed and is the same at every call.
//
// The secrets LiveKit puts in events are dropped here, so nothing
// downstream can log them or hand them to a plugin: the TURN password in
// every room object, and an ingress's stream key, which lets anyone
// publish into the room. The journal keeps the body as received.
func (e *Event) LiveKit() (*livekit.WebhookEvent, error) {
	w := e.wh
	if w == nil {
		return nil, fmt.Errorf("%w: event %s carries no LiveKit webhook", ErrMalformed, e.ID)
	}
	w.once.Do(func() {
		defer func() { w.body = nil }() // read once, whatever the outcome
		var msg livekit.WebhookEvent
		if err := unmarshalOpts.Unmarshal(w.body, &msg); err != nil {
			w.err = fmt.Errorf("%w: decode webhook: %w", ErrMalformed, err)
			return
		}
		if msg.Room != nil {
			msg.Room.TurnPassword = ""
		}
		if msg.IngressInfo != nil {
			msg.IngressInfo.StreamKey = ""
		}
		if msg.Id == "" {
			msg.Id = w.id // derived from the body
		}
		w.msg = &msg
	})
	return w.msg, w.err
}

// RoomName is the LiveKit room the event concerns, or "".
func (e *Event) RoomName() string {
	w := e.wh
	switch {
	case w == nil:
		return ""
	case w.room:
		return w.roomName
	case w.egress:
		return w.egressRoomName
	case w.ingress:
		return w.ingressRoomName
	}
	return ""
}

// RoomMetadata is the metadata of the room object the event carries, and
// whether it carries one.
func (e *Event) RoomMetadata() (string, bool) {
	if e.wh == nil || !e.wh.room {
		return "", false
	}
	return e.wh.roomMetadata, true
}

// OrderKey groups events that must be handled one at a time in arrival
// order: those of one room (egress events included, since room_finished and
// egress_ended interact), else of one resource the way LiveKit's own sender
// queues them.
func (e *Event) OrderKey() string {
	if r := e.RoomName(); r != "" {
		return "room:" + r
	}
	w := e.wh
	switch {
	case w == nil:
	case w.egress:
		return "egress:" + w.egressID
	case w.ingress:
		return "ingress:" + w.ingressID
	case w.participant:
		return "participant:" + w.participantIdentity
	case w.track:
		return "track:" + w.trackSid
	}
	return "event:" + e.ID
}

// Derive makes an lkedge event of the given type that follows from e.
func (e *Event) Derive(typ string, meet *Meet) *Event {
	return &Event{ID: e.ID + ":" + typ, Type: typ, Source: SourceLKEdge, ReceivedAt: e.ReceivedAt, Meet: meet, wh: e.wh}
}

var marshalOpts = protojson.MarshalOptions{}

// MarshalJSON writes the documented event model (docs/events.md). LiveKit's
// objects appear in LiveKit's own protojson form, minus the secrets
// LiveKit drops. It decodes the webhook in full, and fails as LiveKit does. Nothing is HTML-escaped: meet.recording must reach
// plugins byte for byte as stored, because OpenVidu Meet's webhooks carry
// it as JSON.stringify wrote it, with <, > and & as they are, and sign
// those bytes. (A plugin caller must not pass the event through
// json.Marshal, which would escape them again.)
func (e *Event) MarshalJSON() ([]byte, error) {
	// Appended in place, without fmt: this runs once per event that any
	// plugin receives (BenchmarkMarshalJSON).
	b := bytes.NewBuffer(make([]byte, 0, 1024))
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	b.WriteString(`{"version":`)
	b.Write(strconv.AppendInt(b.AvailableBuffer(), Version, 10))
	for _, f := range [...]struct{ name, value string }{{"id", e.ID}, {"type", e.Type}, {"source", string(e.Source)}} {
		b.WriteString(`,"`)
		b.WriteString(f.name)
		b.WriteString(`":`)
		if err := encode(b, enc, f.value); err != nil {
			return nil, fmt.Errorf("encode %s: %w", f.name, err)
		}
	}
	b.WriteString(`,"receivedAt":`)
	b.Write(strconv.AppendInt(b.AvailableBuffer(), e.ReceivedAt.UnixMilli(), 10))
	if e.wh != nil {
		wh, err := e.LiveKit()
		if err != nil {
			return nil, err
		}
		b.WriteString(`,"createdAt":`)
		b.Write(strconv.AppendInt(b.AvailableBuffer(), wh.CreatedAt, 10))
		var scratch []byte
		for _, f := range []struct {
			name string
			msg  proto.Message
			set  bool
		}{
			{"room", wh.Room, wh.Room != nil},
			{"participant", wh.Participant, wh.Participant != nil},
			{"track", wh.Track, wh.Track != nil},
			{"egressInfo", wh.EgressInfo, wh.EgressInfo != nil},
			{"ingressInfo", wh.IngressInfo, wh.IngressInfo != nil},
		} {
			if !f.set {
				continue
			}
			var err error
			if scratch, err = writeProto(b, f.name, f.msg, scratch[:0]); err != nil {
				return nil, err
			}
		}
	}
	if e.Meet != nil {
		b.WriteString(`,"meet":`)
		if err := encode(b, enc, e.Meet); err != nil {
			return nil, fmt.Errorf("encode meet view: %w", err)
		}
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// encode appends v to b through enc, which writes into b, without the
// newline Encode ends each value with. A failed Encode writes nothing.
func encode(b *bytes.Buffer, enc *json.Encoder, v any) error {
	if err := enc.Encode(v); err != nil {
		return err
	}
	b.Truncate(b.Len() - 1)
	return nil
}

// writeProto writes ,"name": and m in protojson, encoding it into scratch,
// which it returns for the next message.
func writeProto(b *bytes.Buffer, name string, m proto.Message, scratch []byte) ([]byte, error) {
	data, err := marshalOpts.MarshalAppend(scratch, m)
	if err != nil {
		return scratch, fmt.Errorf("encode %s: %w", name, err)
	}
	b.WriteString(`,"`)
	b.WriteString(name)
	b.WriteString(`":`)
	// protojson output is not byte-stable by design; compact it so the
	// event is at least free of its random whitespace.
	return data, json.Compact(b, data)
}
