package event

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// recordings are the Meet recordings the golden egress events carry, as
// the Meet stage would have derived them.
var recordings = map[string]string{
	"egress_started": `{"recordingId":"room-123--EG_abc123XYZ--a1b2c3d4e5","roomId":"room-123","status":"STARTING","filename":"room-123--a1b2c3d4e5.mp4","startDate":1745318182050}`,
	"egress_updated": `{"recordingId":"room-123--EG_abc123XYZ--a1b2c3d4e5","roomId":"room-123","status":"ACTIVE","filename":"room-123--a1b2c3d4e5.mp4","startDate":1745318182123.4568}`,
	"egress_ended":   `{"recordingId":"room-123--EG_abc123XYZ--a1b2c3d4e5","roomId":"room-123","status":"COMPLETE","filename":"room-123--a1b2c3d4e5.mp4","startDate":1745318182123.4568,"endDate":1745318192654.3218,"duration":10.530865198,"size":1048576,"details":"End reason: StopEgress API"}`,
}

// TestGolden pins the documented event model (docs/events.md): each
// testdata/events/<type>.webhook.json decodes and encodes to
// <type>.event.json, one JSON object as a plugin receives it (and as
// `lkedge plugin run --event` takes it); room_finished also gives lkedge's
// own roomFinished.event.json. Every .event.json there must come from here.
func TestGolden(t *testing.T) {
	dir := filepath.Join("..", "..", "testdata", "events")
	inputs, err := filepath.Glob(filepath.Join(dir, "*.webhook.json"))
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no inputs: %v", err)
	}
	received := time.UnixMilli(1745318193000)
	made := map[string]bool{}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".webhook.json")
		body, err := os.ReadFile(in)
		if err != nil {
			t.Fatal(err)
		}
		ev, err := FromWebhook(body, received)
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if ev.Type != name {
			t.Errorf("%s holds a %s event", in, ev.Type)
		}
		wh, err := ev.LiveKit()
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if wh.GetRoom().GetTurnPassword() != "" || wh.GetIngressInfo().GetStreamKey() != "" {
			t.Errorf("%s: the decoded event kept a secret: nothing downstream may see it", name)
		}
		ev.Meet = &Meet{Owned: true, RoomID: ev.RoomName()}
		if r, ok := recordings[name]; ok {
			ev.Meet.Recording = json.RawMessage(r)
		}
		outputs := map[string]*Event{name: ev}
		if ev.Type == "room_finished" {
			outputs[TypeRoomFinished] = ev.Derive(TypeRoomFinished, &Meet{Owned: true, RoomID: ev.RoomName(), Deleted: true})
		}
		for out, e := range outputs {
			made[out] = true
			t.Run(out, func(t *testing.T) { checkGolden(t, filepath.Join(dir, out+".event.json"), e) })
		}
	}
	goldens, _ := filepath.Glob(filepath.Join(dir, "*.event.json"))
	for _, g := range goldens {
		if name := strings.TrimSuffix(filepath.Base(g), ".event.json"); !made[name] {
			t.Errorf("%s has no %s.webhook.json to come from", g, name)
		}
	}
}

func checkGolden(t *testing.T, golden string, e *Event) {
	b, err := e.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if err := json.Indent(&got, b, "", "  "); err != nil {
		t.Fatal(err)
	}
	got.WriteByte('\n')
	for _, secret := range []string{"turnPassword", "streamKey"} {
		if bytes.Contains(got.Bytes(), []byte(secret)) {
			t.Errorf("%s must never reach plugins", secret)
		}
	}
	if *update {
		if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./host/event -update)", err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Errorf("event JSON differs from %s:\n%s", golden, got.Bytes())
	}
}

func TestFromWebhook(t *testing.T) {
	tests := []struct {
		name, body     string
		wantErr        bool
		wantID, wantOK string // expected ID ("" = derived from the content) and order key
	}{
		{"room event", `{"event":"room_started","id":"EV_1","room":{"name":"r1"}}`, false, "EV_1", "room:r1"},
		{"egress orders by room", `{"event":"egress_ended","id":"EV_2","egressInfo":{"egressId":"EG_1","roomName":"r1"}}`, false, "EV_2", "room:r1"},
		{"egress without room", `{"event":"egress_ended","id":"EV_3","egressInfo":{"egressId":"EG_1"}}`, false, "EV_3", "egress:EG_1"},
		{"ingress", `{"event":"ingress_started","id":"EV_4","ingressInfo":{"ingressId":"IN_1"}}`, false, "EV_4", "ingress:IN_1"},
		{"nothing but an id", `{"event":"x","id":"EV_5"}`, false, "EV_5", "event:EV_5"},
		{"no id gets a content id", `{"event":"room_started","room":{"name":"r1"}}`, false, "", "room:r1"},
		{"unknown fields ignored", `{"event":"room_started","id":"EV_6","future":1,"room":{"name":"r","future":[1]}}`, false, "EV_6", "room:r"},
		{"not JSON", `{"event":`, true, "", ""},
		{"wrong type", `{"event":1}`, true, "", ""},
		{"null", `null`, true, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := FromWebhook([]byte(tt.body), time.Now())
			if tt.wantErr {
				if err == nil {
					t.Fatal("want an error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantID == "" {
				if !strings.HasPrefix(ev.ID, "sha256:") || len(ev.ID) != len("sha256:")+32 {
					t.Errorf("ID = %q", ev.ID)
				}
			} else if ev.ID != tt.wantID {
				t.Errorf("ID = %q, want %q", ev.ID, tt.wantID)
			}
			if got := ev.OrderKey(); got != tt.wantOK {
				t.Errorf("OrderKey = %q, want %q", got, tt.wantOK)
			}
		})
	}
}

// TestNewerEnumValues: a LiveKit newer than lkedge's protocol may send an
// enum name lkedge does not know. The webhook is still accepted (LiveKit
// would not send it again), and the event reaches plugins without that one
// field, as protojson drops it like an unknown field (docs/events.md,
// Enums). An unknown number is kept: TestUnknownEnumNumbers.
func TestNewerEnumValues(t *testing.T) {
	for _, tc := range []struct {
		name, body, object, absent, kept string
	}{
		{"participant state", `{"event":"participant_joined","id":"EV_1","room":{"name":"r"},"participant":{"identity":"alice","state":"FUTURE_STATE","kind":"STANDARD"}}`,
			`"participant":`, `"state"`, `"identity":"alice"`},
		{"participant kind", `{"event":"participant_joined","id":"EV_2","room":{"name":"r"},"participant":{"identity":"bob","state":"ACTIVE","kind":"FUTURE_KIND"}}`,
			`"participant":`, `"kind"`, `"state":"ACTIVE"`},
		{"egress status", `{"event":"egress_updated","id":"EV_3","egressInfo":{"egressId":"EG_1","roomName":"r","status":"EGRESS_FUTURE"}}`,
			`"egressInfo":`, `"status"`, `"egressId":"EG_1"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := FromWebhook([]byte(tc.body), time.Now())
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			b, err := ev.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			_, obj, ok := bytes.Cut(b, []byte(tc.object))
			if !ok || !bytes.Contains(obj, []byte(tc.kept)) {
				t.Fatalf("event %s lacks %s with %s", b, tc.object, tc.kept)
			}
			if obj, _, _ = bytes.Cut(obj, []byte("}")); bytes.Contains(obj, []byte(tc.absent)) {
				t.Errorf("event %s still has %s", b, tc.absent)
			}
		})
	}
}

// BenchmarkMarshalJSON is the plugin stage's encoding of one event, done
// once per event for all its plugins.
func BenchmarkMarshalJSON(b *testing.B) {
	for _, name := range []string{"egress_updated", "participant_joined"} {
		b.Run(name, func(b *testing.B) {
			body, err := os.ReadFile(filepath.Join("..", "..", "testdata", "events", name+".webhook.json"))
			if err != nil {
				b.Fatal(err)
			}
			ev, err := FromWebhook(body, time.UnixMilli(1745318193000))
			if err != nil {
				b.Fatal(err)
			}
			ev.Meet = &Meet{Owned: true, RoomID: ev.RoomName()}
			for b.Loop() {
				if _, err := ev.MarshalJSON(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkFromWebhook is what ingest does with every webhook's body, and
// what reading it in full adds (the Meet logic on a Meet room, a plugin).
func BenchmarkFromWebhook(b *testing.B) {
	for _, name := range []string{"egress_updated", "participant_joined"} {
		body, err := os.ReadFile(filepath.Join("..", "..", "testdata", "events", name+".webhook.json"))
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name+"/head", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := FromWebhook(body, time.UnixMilli(1745318193000)); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(name+"/full", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				ev, err := FromWebhook(body, time.UnixMilli(1745318193000))
				if err != nil {
					b.Fatal(err)
				}
				if _, err := ev.LiveKit(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
