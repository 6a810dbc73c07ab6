package service

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lkedge/lkedge/host/internal/testserver"
)

// duplicateKey returns the first key that an object of the JSON value in
// line repeats, or "".
func duplicateKey(t *testing.T, line string) string {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(line))
	var walk func() string
	walk = func() string {
		tok, err := dec.Token()
		if err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		switch tok {
		case json.Delim('{'):
			seen := map[string]bool{}
			for dec.More() {
				k, _ := dec.Token()
				key := k.(string)
				if seen[key] {
					return key
				}
				seen[key] = true
				if d := walk(); d != "" {
					return d
				}
			}
			dec.Token()
		case json.Delim('['):
			for dec.More() {
				if d := walk(); d != "" {
					return d
				}
			}
			dec.Token()
		}
		return ""
	}
	return walk()
}

// TestLogLines runs the real binary through what makes it log the most —
// LiveKit unreachable, a Meet room record that cannot be read, a webhook of
// the wrong content type, one too large, a shutdown — and checks every JSON
// line: no key twice in one line, durations as "100ms", the 415 naming the
// content type received, the 413 logged once, and a last line saying that
// lkedge stopped.
func TestLogLines(t *testing.T) {
	dir := t.TempDir()
	rooms := filepath.Join(dir, "openvidu", "openvidu-meet", "rooms")
	writeRoomRecord(t, dir, room, roomJSON)
	// A record that is a symbolic link to itself: reading it fails (ELOOP),
	// neither source can confirm the room, and the event is retried.
	if err := os.MkdirAll(filepath.Join(rooms, "room-dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("room-dir.json", filepath.Join(rooms, "room-dir", "room-dir.json")); err != nil {
		t.Fatal(err)
	}
	proc := testserver.StartLKEdge(t, map[string]string{
		"LIVEKIT_URL": "http://127.0.0.1:1", "LKEDGE_STORE": "file://" + dir, "LKEDGE_DATA_DIR": dir,
		"LKEDGE_MAX_BODY_BYTES": "4096",
	})
	bodies := [][]byte{
		// ownership: LiveKit room lookup failed (no record for room-x).
		[]byte(`{"event":"egress_started","id":"EV_l1","egressInfo":{"egressId":"EG_x","roomName":"room-x","status":"EGRESS_STARTING"}}`),
		// room status not sent (listing egress fails).
		[]byte(`{"event":"participant_joined","id":"EV_l2","room":{"name":"` + room + `","metadata":"{\"createdBy\":\"openviduMeet\"}"},"participant":{"sid":"PA_1","identity":"alice"}}`),
		// recording lock kept (LiveKit cannot say whether egress is active).
		egressBody("EV_l3", "egress_ended", "EGRESS_COMPLETE", "1745318193000000000"),
		// retried with a duration.
		[]byte(`{"event":"egress_started","id":"EV_l4","egressInfo":{"egressId":"EG_d","roomName":"room-dir","status":"EGRESS_STARTING"}}`),
	}
	for _, b := range bodies {
		if code := post(t, proc.URL, b); code != http.StatusOK {
			t.Fatalf("webhook %s: status %d", b, code)
		}
	}
	send := func(contentType string, body []byte) int {
		req, _ := http.NewRequest(http.MethodPost, proc.URL+"/livekit/webhook", bytes.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.StatusCode
	}
	if code := send("text/x-odd", []byte("{}")); code != http.StatusUnsupportedMediaType {
		t.Fatalf("wrong content type: status %d", code)
	}
	if code := send("application/webhook+json", bytes.Repeat([]byte("x"), 8192)); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("too large: status %d", code)
	}
	waitLog := func(msg string) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for !strings.Contains(proc.Log(), msg) {
			if time.Now().After(deadline) {
				t.Fatalf("no %q in the log:\n%s", msg, proc.Log())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for _, msg := range []string{"ownership: LiveKit room lookup failed", "room status not sent", "recording lock kept", "event processing failed; retrying"} {
		waitLog(msg)
	}
	// The record readable again, the retried event finishes and nothing
	// holds up the shutdown.
	link := filepath.Join(rooms, "room-dir", "room-dir.json")
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(link, []byte(`{"roomId":"room-dir"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		res, err := http.Get(proc.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		m, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if bytes.Contains(m, []byte("\nlkedge_backlog_events 0\n")) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("events still in the backlog:\n%s", proc.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
	proc.Stop()

	lines := strings.Split(strings.TrimSpace(proc.Log()), "\n")
	var too, mediaType int
	for _, line := range lines {
		if !strings.HasPrefix(line, "{") {
			t.Errorf("not a JSON line: %s", line)
			continue
		}
		if k := duplicateKey(t, line); k != "" {
			t.Errorf("key %q twice in %s", k, line)
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		if m["msg"] == "event processing failed; retrying" {
			if d, ok := m["retry_in"].(string); !ok || !strings.HasSuffix(d, "s") {
				t.Errorf("retry_in = %#v, want a duration such as \"100ms\": %s", m["retry_in"], line)
			}
		}
		if m["status"] == float64(413) || strings.Contains(line, "body size exceeds") {
			too++
		}
		if m["status"] == float64(415) {
			mediaType++
			if !strings.Contains(fmt.Sprint(m["err"]), `"text/x-odd"`) {
				t.Errorf("the 415 line does not name the content type received: %s", line)
			}
		}
	}
	if too != 1 || mediaType != 1 {
		t.Errorf("%d lines about the 413 and %d about the 415, want one each:\n%s", too, mediaType, proc.Log())
	}
	var last map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil || last["msg"] != "lkedge stopped" {
		t.Errorf("last line %s (%v), want msg \"lkedge stopped\"", lines[len(lines)-1], err)
	}
}
