package event

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lkedge/lkedge/sdk"
)

// TestMarshalKeepsHTMLCharacters: OpenVidu Meet's JSON.stringify writes <,
// > and & as they are, and its webhook's X-Signature covers those bytes, so
// the recording handed to plugins (and every string lkedge writes itself)
// must carry them unescaped, byte for byte as stored.
func TestMarshalKeepsHTMLCharacters(t *testing.T) {
	recording := `{"recordingId":"r<1>--EG_1--u1","roomId":"r<1>","status":"FAILED","filename":"r<1>--u1.mp4&x=<y>","startDate":1,"error":"Start signal not received <pipeline> & \"more\"","details":"a\\u003cb \u2028"}`
	ev, err := FromWebhook([]byte(`{"event":"egress_ended","id":"EV_<&>","egressInfo":{"egressId":"EG_1","roomName":"r<1>","error":"<x> & y"}}`), time.UnixMilli(1))
	if err != nil {
		t.Fatal(err)
	}
	ev.Meet = &Meet{Owned: true, RoomID: "r<1>&", Recording: json.RawMessage(recording)}
	b, err := ev.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	want := `{"version":1,"id":"EV_<&>","type":"egress_ended","source":"livekit","receivedAt":1,"createdAt":0,` +
		`"egressInfo":{"egressId":"EG_1","roomName":"r<1>","error":"<x> & y"},` +
		`"meet":{"owned":true,"roomId":"r<1>&","recording":` + recording + `}}`
	if string(b) != want {
		t.Fatalf("MarshalJSON\n got %s\nwant %s", b, want)
	}
	got, err := sdk.ParseEvent(b)
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Meet.Recording) != recording {
		t.Errorf("a plugin reads meet.recording\n%s\nwant\n%s", got.Meet.Recording, recording)
	}
}

// TestUnknownEnumNumbers: protojson reads an enum number it has no name for
// and writes it back as that number. Such an event still reaches plugins,
// with the number where the name would be, and the SDK reads it.
func TestUnknownEnumNumbers(t *testing.T) {
	body := `{"event":"egress_updated","id":"EV_n","egressInfo":{"egressId":"EG_1","roomName":"r","sourceType":7,"status":99,` +
		`"fileResults":[{"filename":"r--u.mp4"}],"streamResults":[{"status":9}]}}`
	ev, err := FromWebhook([]byte(body), time.UnixMilli(1))
	if err != nil {
		t.Fatalf("refused: %v", err)
	}
	b, err := ev.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"sourceType":7`, `"status":99`, `"streamResults":[{"status":9}]`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("event %s lacks %s", b, want)
		}
	}
	got, err := sdk.ParseEvent(b)
	if err != nil {
		t.Fatalf("a plugin cannot read the event: %v", err)
	}
	if got.Egress.Status != "99" || got.Egress.SourceType != "7" || got.Egress.StreamResults[0].Status != "9" {
		t.Errorf("SDK read status %q, sourceType %q, stream status %q; want 99, 7, 9", got.Egress.Status, got.Egress.SourceType, got.Egress.StreamResults[0].Status)
	}
}

// TestNotAWebhook: a JSON object without LiveKit's event name is not a
// LiveKit webhook, however it was signed. A name lkedge does not know but
// written as LiveKit writes its names is one LiveKit may add: it passes.
func TestNotAWebhook(t *testing.T) {
	for _, tc := range []struct {
		body string
		ok   bool
	}{
		{`{}`, false},
		{`{"hello":1}`, false},
		{`{"event":""}`, false},
		{`{"event":"","id":"EV_1","room":{"name":"r"}}`, false},
		{`{"event":"Room_Started"}`, false},
		{`{"event":"room started"}`, false},
		{`{"event":"room-started"}`, false},
		{`{"event":"_room"}`, false},
		{`{"event":"room_"}`, false},
		{`{"event":"room__started"}`, false},
		{`{"event":"2fa"}`, false},
		{`{"event":"<script>"}`, false},
		{`{"event":"` + strings.Repeat("a", 65) + `"}`, false},
		{`{"event":"room_started"}`, true},
		{`{"event":"agent_job_pending"}`, true},
		{`{"event":"some_event_livekit_adds_later"}`, true},
		{`{"event":"` + strings.Repeat("a", 64) + `"}`, true},
	} {
		t.Run(tc.body, func(t *testing.T) {
			ev, err := FromWebhook([]byte(tc.body), time.UnixMilli(1))
			if tc.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrNotWebhook) {
				t.Fatalf("FromWebhook = %v, %v; want ErrNotWebhook", ev, err)
			}
		})
	}
	if _, err := FromWebhook([]byte(`{"event":1}`), time.UnixMilli(1)); err == nil || errors.Is(err, ErrNotWebhook) {
		t.Errorf("malformed JSON: %v, want a decode error", err)
	}
	_, err := FromWebhook([]byte(`{"event":"Room Started"}`), time.UnixMilli(1))
	if want := `not a LiveKit webhook: event name "Room Started" is not lower-case words joined by _`; err == nil || err.Error() != want {
		t.Errorf("error %v\nwant %s", err, want)
	}
}
