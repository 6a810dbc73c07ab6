package dispatch

import (
	"bytes"
	"encoding/json"
	"testing"
)

// TestTaskRecordEncode: a stored task reads back as it was, its body byte
// for byte (what a plugin gets after a restart), whatever JSON the body is.
func TestTaskRecordEncode(t *testing.T) {
	for _, r := range []taskRecord{
		{Plugin: "hook", EventID: "EV_1", Key: "room", Body: json.RawMessage(`{"id":"EV_1"}`)},
		// meet.recording as JSON.stringify wrote it: <, > and & unescaped.
		{Plugin: "openvidu-webhook", EventID: "EV_2", Key: "r<1>", Body: json.RawMessage(`{"meet":{"recording":{"filename":"a<b>&c.mp4","error":"\u2028"}}}`)},
		// Whitespace and escapes are the body's own.
		{Plugin: "p", EventID: "EV_3", Key: "k", Body: json.RawMessage("{ \"a\" : [1, 2.50, \"\\u00e9\"] }"), Attempts: 3, LastError: "call failed: <timeout> & more"},
		{Plugin: "p", EventID: "EV_4", Key: "k"},
	} {
		b, err := r.encode()
		if err != nil {
			t.Fatalf("encode %s: %v", r.EventID, err)
		}
		var got taskRecord
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%s: stored %s, which does not decode: %v", r.EventID, b, err)
		}
		if !bytes.Equal(got.Body, r.Body) {
			t.Errorf("%s: body read back as %s, want %s", r.EventID, got.Body, r.Body)
		}
		if got.Plugin != r.Plugin || got.EventID != r.EventID || got.Key != r.Key || got.Attempts != r.Attempts || got.LastError != r.LastError {
			t.Errorf("%s: read back %+v, want %+v", r.EventID, got, r)
		}
	}
}
