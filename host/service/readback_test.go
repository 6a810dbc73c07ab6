package service

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lkedge/lkedge/host/internal/testserver"
	"github.com/lkedge/lkedge/host/livekitapi/livekittest"
)

// TestLongBacklogReadBack drives the real binary with a room whose events
// pile up: its first recording update cannot be stored (a file stands
// where the metadata folder goes) and is retried, while 1 299 more arrive
// behind it. Past the first 1 024 waiting, an event keeps
// only its place in memory and is read back from the journal in its turn.
// Every update must still be processed in order: the Meet logic sends the
// room a data message for each update newer than the stored state, so one
// processed out of order would send none.
func TestLongBacklogReadBack(t *testing.T) {
	t.Parallel()
	const n, inMemory = 1300, 1024
	dir := t.TempDir()
	lk := livekittest.New(t, "devkey", "secret")
	writeRoomRecord(t, dir, "meet-rb", `{"roomId":"meet-rb"}`)
	proc := testserver.StartLKEdge(t, map[string]string{
		"LIVEKIT_URL": lk.URL(), "LKEDGE_STORE": "file://" + dir, "LKEDGE_DATA_DIR": dir,
	})
	body := func(i int) []byte {
		return fmt.Appendf(nil, `{"event":"egress_updated","id":"EV_rb_%d","egressInfo":{"egressId":"EG_rb","roomId":"RM_rb","roomName":"meet-rb",`+
			`"status":"EGRESS_ACTIVE","startedAt":"1795755700000000000","updatedAt":"%d",`+
			`"fileResults":[{"filename":"openvidu-meet/recordings/meet-rb/meet-rb--rb.mp4","startedAt":"1795755700000000000"}]}}`,
			i, 1795755700000000000+int64(i)*1000)
	}
	blocker := filepath.Join(dir, "openvidu", "openvidu-meet", "recordings", ".metadata")
	if err := os.MkdirAll(filepath.Dir(blocker), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(blocker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if code := post(t, proc.URL, body(0)); code != http.StatusOK {
		t.Fatalf("first update: status %d", code)
	}
	eventually(t, 5*time.Second, "the first update retried", func() bool {
		return metric(t, proc.URL, `lkedge_events_processed_total{outcome="retried"}`) > 0
	})
	for i := 1; i < n; i++ {
		if code := post(t, proc.URL, body(i)); code != http.StatusOK {
			t.Fatalf("update %d: status %d", i, code)
		}
	}
	if err := os.Remove(blocker); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "every update processed", func() bool {
		return metric(t, proc.URL, `lkedge_events_processed_total{outcome="done"}`) == n
	})
	if got, want := metric(t, proc.URL, "lkedge_backlog_read_back_total"), float64(n-1-inMemory); got != want {
		t.Errorf("%g events read back from the journal, want %g (all but the first and the %d kept)", got, want, inMemory)
	}
	if got := len(lk.SentData()); got != n {
		t.Errorf("%d data messages sent to the room, want one per update (%d): some were processed out of order", got, n)
	}
	if failed := metric(t, proc.URL, `lkedge_events_processed_total{outcome="failed"}`); failed != 0 {
		t.Errorf("%g events failed", failed)
	}
}

// metric reads one sample of the service's /metrics; absent is 0.
func metric(t *testing.T, url, name string) float64 {
	t.Helper()
	res, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			return f
		}
	}
	return 0
}
