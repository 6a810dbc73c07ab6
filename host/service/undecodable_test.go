package service

import (
	"bytes"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/lkedge/lkedge/host/internal/testserver"
	"github.com/lkedge/lkedge/host/livekitapi/livekittest"
)

// TestBodyThatIsJSONButNotAWebhook drives the real binary: a signed body
// is read in full only when someone needs it, so one that is valid JSON
// but not LiveKit's message (a number written as a word) is answered 200.
// In a room Meet does not own, with no plugin, it is finished when
// accepted like any webhook nobody reads; in a Meet room it is failed at its first attempt (the default ten
// attempts would take most of a minute), shown with its decode error by
// `lkedge events failed`, and a retry is refused.
func TestBodyThatIsJSONButNotAWebhook(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	lk := livekittest.New(t, "devkey", "secret")
	writeRoomRecord(t, dir, "meet-4", `{"roomId":"meet-4"}`)
	proc := testserver.StartLKEdge(t, map[string]string{
		"LIVEKIT_URL": lk.URL(), "LKEDGE_STORE": "file://" + dir, "LKEDGE_DATA_DIR": dir,
	})
	for _, body := range []string{
		`{"event":"participant_joined","id":"EV_odd","room":{"name":"elsewhere-4","emptyTimeout":"soon"},"participant":{"identity":"ana"}}`,
		`{"event":"egress_updated","id":"EV_bad","egressInfo":{"egressId":"EG_4","roomName":"meet-4","status":"EGRESS_ACTIVE","startedAt":"soon"}}`,
	} {
		if code := post(t, proc.URL, []byte(body)); code != http.StatusOK {
			t.Fatalf("%s: status %d, want 200", body, code)
		}
	}
	// The commands docs/operations.md shows, pointed at this process's
	// operator API.
	cli := func(command string, id ...string) (string, error) {
		var out bytes.Buffer
		cmd := exec.Command(testserver.LKEdge(t), append([]string{"events", "failed", command, "--admin", proc.AdminURL}, id...)...)
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}
	var list string
	eventually(t, 3*time.Second, "EV_bad among the failed events", func() bool {
		list, _ = cli("list")
		return strings.Contains(list, "EV_bad")
	})
	if !strings.Contains(list, "malformed webhook") || strings.Contains(list, "EV_odd") {
		t.Fatalf("lkedge events failed list:\n%s\nwant EV_bad alone, failed as a malformed webhook", list)
	}
	if out, err := cli("show", "EV_bad"); err != nil || !strings.Contains(out, "decode_error") {
		t.Fatalf("lkedge events failed show EV_bad (%v):\n%s", err, out)
	}
	if out, err := cli("retry", "EV_bad"); err == nil || !strings.Contains(out, "no longer decodes") {
		t.Fatalf("lkedge events failed retry EV_bad (%v):\n%s\nwant it refused", err, out)
	}
	eventually(t, 3*time.Second, "nothing left to process", func() bool {
		res, err := http.Get(proc.URL + "/metrics")
		if err != nil {
			return false
		}
		defer res.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(res.Body)
		return strings.Contains(b.String(), "\nlkedge_backlog_events 0\n") && strings.Contains(b.String(), `lkedge_events_processed_total{outcome="skipped"} 1`)
	})
}
