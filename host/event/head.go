package event

import (
	"fmt"
	"unicode/utf8"

	"github.com/valyala/fastjson"
)

// head is what lkedge reads of every webhook when it arrives: the fields
// that name the event and its room, so that it can be recorded, ordered and
// matched to OpenVidu Meet. The rest of the body is decoded only for the
// events that are read in full (Event.LiveKit).
//
// It follows protojson's reading of those fields: a field may appear under
// its JSON or its proto name but only once, null means absent, and a value
// of another JSON type is an error. TestHeadAgreesWithProtojson and
// FuzzHead hold it to protojson.
type head struct {
	event, id string

	room                       bool // a room object (not null) is present
	roomName, roomMetadata     string
	egress                     bool
	egressID, egressRoomName   string
	ingress                    bool
	ingressID, ingressRoomName string
	participant                bool
	participantIdentity        string
	track                      bool
	trackSid                   string
}

// parsers keeps fastjson's parsers, which reuse their value trees: once
// they are warm, a scan allocates only the strings it copies out.
var parsers fastjson.ParserPool

// field is one string field scanHead reads: its JSON and proto names and
// where it goes.
type field struct {
	json, proto string
	dst         func(*head) *string
}

// object is one message field scanHead reads into.
type object struct {
	json, proto string
	present     func(*head) *bool
	fields      []field
}

var (
	topFields = []field{
		{"event", "event", func(h *head) *string { return &h.event }},
		{"id", "id", func(h *head) *string { return &h.id }},
	}
	objects = []object{
		{"room", "room", func(h *head) *bool { return &h.room }, []field{
			{"name", "name", func(h *head) *string { return &h.roomName }},
			{"metadata", "metadata", func(h *head) *string { return &h.roomMetadata }},
		}},
		{"egressInfo", "egress_info", func(h *head) *bool { return &h.egress }, []field{
			{"egressId", "egress_id", func(h *head) *string { return &h.egressID }},
			{"roomName", "room_name", func(h *head) *string { return &h.egressRoomName }},
		}},
		{"ingressInfo", "ingress_info", func(h *head) *bool { return &h.ingress }, []field{
			{"ingressId", "ingress_id", func(h *head) *string { return &h.ingressID }},
			{"roomName", "room_name", func(h *head) *string { return &h.ingressRoomName }},
		}},
		{"participant", "participant", func(h *head) *bool { return &h.participant }, []field{
			{"identity", "identity", func(h *head) *string { return &h.participantIdentity }},
		}},
		{"track", "track", func(h *head) *bool { return &h.track }, []field{
			{"sid", "sid", func(h *head) *string { return &h.trackSid }},
		}},
	}
)

// scanHead reads the head of body, which must be one JSON object.
func scanHead(body []byte) (head, error) {
	p := parsers.Get()
	defer parsers.Put(p)
	v, err := p.ParseBytes(body)
	if err != nil {
		return head{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	o, err := v.Object()
	if err != nil {
		return head{}, fmt.Errorf("%w: the body is not a JSON object", ErrMalformed)
	}
	var h head
	var seen [2]uint64 // by index: top fields, then objects
	o.Visit(func(k []byte, v *fastjson.Value) {
		if err != nil {
			return
		}
		key := string(k) // not allocated: used as a comparison only
		for i, f := range topFields {
			if key == f.json || key == f.proto {
				err = readString(&h, v, f, &seen[0], i)
				return
			}
		}
		for i, ob := range objects {
			if key == ob.json || key == ob.proto {
				err = readObject(&h, v, ob, &seen[1], i)
				return
			}
		}
	})
	return h, err
}

// once marks field i of a message as seen; protojson refuses a field set
// twice, even under its two names.
func once(seen *uint64, i int, name string) error {
	if *seen&(1<<i) != 0 {
		return fmt.Errorf("%w: duplicate field %q", ErrMalformed, name)
	}
	*seen |= 1 << i
	return nil
}

func readString(h *head, v *fastjson.Value, f field, seen *uint64, i int) error {
	if err := once(seen, i, f.json); err != nil {
		return err
	}
	switch v.Type() {
	case fastjson.TypeNull:
		return nil
	case fastjson.TypeString:
	default:
		return fmt.Errorf("%w: %s is not a string", ErrMalformed, f.json)
	}
	b := v.GetStringBytes()
	if !utf8.Valid(b) {
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrMalformed, f.json)
	}
	*f.dst(h) = string(b)
	return nil
}

func readObject(h *head, v *fastjson.Value, ob object, seen *uint64, i int) error {
	if err := once(seen, i, ob.json); err != nil {
		return err
	}
	switch v.Type() {
	case fastjson.TypeNull:
		return nil
	case fastjson.TypeObject:
	default:
		return fmt.Errorf("%w: %s is not an object", ErrMalformed, ob.json)
	}
	*ob.present(h) = true
	var inner uint64
	var err error
	v.GetObject().Visit(func(k []byte, v *fastjson.Value) {
		if err != nil {
			return
		}
		key := string(k)
		for j, f := range ob.fields {
			if key == f.json || key == f.proto {
				err = readString(h, v, f, &inner, j)
				return
			}
		}
	})
	return err
}
