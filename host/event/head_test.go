package event

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/livekit/protocol/livekit"
	"github.com/valyala/fastjson"
)

// headOf is the head protojson's decoding gives: the oracle scanHead is
// held to.
func headOf(wh *livekit.WebhookEvent) head {
	h := head{event: wh.Event, id: wh.Id}
	if r := wh.Room; r != nil {
		h.room, h.roomName, h.roomMetadata = true, r.Name, r.Metadata
	}
	if e := wh.EgressInfo; e != nil {
		h.egress, h.egressID, h.egressRoomName = true, e.EgressId, e.RoomName
	}
	if i := wh.IngressInfo; i != nil {
		h.ingress, h.ingressID, h.ingressRoomName = true, i.IngressId, i.RoomName
	}
	if p := wh.Participant; p != nil {
		h.participant, h.participantIdentity = true, p.Identity
	}
	if t := wh.Track; t != nil {
		h.track, h.trackSid = true, t.Sid
	}
	return h
}

// testBodies are the webhooks under testdata, as LiveKit writes them.
func testBodies(t testing.TB) map[string][]byte {
	t.Helper()
	bodies := map[string][]byte{}
	for _, pattern := range []string{"../../testdata/events/*.webhook.json", "../../testdata/livekit-captured/*.body.json"} {
		files, err := filepath.Glob(pattern)
		if err != nil || len(files) == 0 {
			t.Fatalf("no test webhooks at %s (%v)", pattern, err)
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			bodies[filepath.Base(f)] = b
		}
	}
	return bodies
}

// headCases are bodies written by hand: the forms protojson reads that
// LiveKit does not write, and the errors protojson raises in the fields
// the head reads.
var headCases = []struct {
	name, body string
	err        bool // protojson and scanHead both refuse it
}{
	{"proto names", `{"event":"egress_updated","egress_info":{"egress_id":"EG_1","room_name":"r-1"},"ingress_info":{"ingress_id":"IN_1","room_name":"r-2"}}`, false},
	{"null is absent", `{"event":"room_started","id":null,"room":null,"egressInfo":{"roomName":null,"egressId":"EG_2"}}`, false},
	{"empty objects are present", `{"event":"room_started","room":{},"participant":{},"track":{}}`, false},
	{"escapes in keys and values", `{"\u0065vent":"room_started","room":{"n\u0061me":"caf\u00e9 \ud83d\ude00 \"q\" \\ \/","metadata":"{\"createdBy\":\"openviduMeet\"}"}}`, false},
	{"unknown fields hide nothing", `{"event":"track_published","x":{"room":{"name":"no"}},"room":{"name":"yes","x":[{"name":"no"}]},"participant":{"name":"no","identity":"alice"},"track":{"sid":"TR_1","name":"no"}}`, false},
	{"other known fields are skipped", `{"event":"participant_joined","createdAt":"17","room":{"sid":"RM_1","emptyTimeout":5,"name":"r"},"participant":{"permission":{"canPublish":true},"identity":"bob"}}`, false},
	{"no event name", `{"id":"EV_1"}`, false},

	{"not JSON", `{"event":`, true},
	{"not an object", `["event"]`, true},
	{"event name twice", `{"event":"room_started","event":"room_finished"}`, true},
	{"a field under both its names", `{"event":"egress_updated","egressInfo":{},"egress_info":{}}`, true},
	{"an inner field twice", `{"event":"room_started","room":{"name":"a","name":"b"}}`, true},
	{"an inner field under both its names", `{"event":"egress_updated","egressInfo":{"roomName":"a","room_name":"b"}}`, true},
	{"event name not a string", `{"event":5}`, true},
	{"room not an object", `{"event":"room_started","room":"r"}`, true},
	{"room name not a string", `{"event":"room_started","room":{"name":["r"]}}`, true},
	{"invalid UTF-8", "{\"event\":\"room_started\",\"room\":{\"name\":\"\xff\"}}", true},
}

// TestHeadAgreesWithProtojson: for every body protojson decodes, scanHead
// reads the same head; for the errors protojson finds in those fields,
// scanHead refuses the body too.
func TestHeadAgreesWithProtojson(t *testing.T) {
	bodies := testBodies(t)
	for _, c := range headCases {
		bodies[c.name] = []byte(c.body)
	}
	for name, body := range bodies {
		t.Run(name, func(t *testing.T) {
			var wh livekit.WebhookEvent
			perr := unmarshalOpts.Unmarshal(body, &wh)
			h, serr := scanHead(body)
			wantErr := false
			for _, c := range headCases {
				if c.name == name {
					wantErr = c.err
				}
			}
			switch {
			case wantErr && (perr == nil || serr == nil):
				t.Fatalf("protojson error %v, scanHead error %v: want both to refuse it", perr, serr)
			case wantErr:
			case perr != nil:
				t.Fatalf("protojson: %v", perr)
			case serr != nil:
				t.Fatalf("scanHead refused what protojson decodes: %v", serr)
			case h != headOf(&wh):
				t.Errorf("scanHead read\n%+v\nprotojson\n%+v", h, headOf(&wh))
			}
		})
	}
}

// FuzzHead holds scanHead to protojson on any body: whatever protojson
// decodes, scanHead reads alike. The converse does not hold: scanHead
// reads a few fields of a body it checks only as JSON, and what is wrong
// elsewhere is found by Event.LiveKit.
func FuzzHead(f *testing.F) {
	for _, b := range testBodies(f) {
		f.Add(b)
	}
	for _, c := range headCases {
		f.Add([]byte(c.body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var wh livekit.WebhookEvent
		perr := unmarshalOpts.Unmarshal(body, &wh)
		h, serr := scanHead(body)
		if perr != nil {
			return
		}
		if serr != nil {
			// fastjson nests at most MaxDepth values; LiveKit's webhooks
			// are a few levels deep.
			if strings.Contains(serr.Error(), "depth") && strings.Count(string(body), "[")+strings.Count(string(body), "{") > fastjson.MaxDepth {
				return
			}
			t.Fatalf("scanHead refused what protojson decodes: %v", serr)
		}
		if want := headOf(&wh); h != want {
			t.Fatalf("scanHead read\n%+v\nprotojson\n%+v", h, want)
		}
	})
}
