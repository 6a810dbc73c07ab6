package service

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lkedge/lkedge/host/internal/testserver"
	"github.com/lkedge/lkedge/host/journal"
	"github.com/lkedge/lkedge/host/livekitapi/livekittest"
	"github.com/lkedge/lkedge/host/plugin/plugintest"
	"github.com/lkedge/lkedge/host/webhook"
)

// TestCrashUnderLoad: lkedge is killed with SIGKILL three times while a
// load of signed webhooks arrives, and restarted on the same data. The
// sender behaves like LiveKit's: it retries until it gets a 200, and sends
// a room's next event only after that. Afterwards every accepted event's
// effect is in the store, every outbound webhook a plugin asked for reached
// the sink (a duplicate only with the same idempotency key and body), and
// nothing is left pending or failed.
func TestCrashUnderLoad(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	lk := livekittest.New(t, "devkey", "secret")
	const rooms = 60
	for r := range rooms {
		id := fmt.Sprintf("crash-%d", r)
		writeRoomRecord(t, dir, id, `{"roomId":"`+id+`"}`)
	}
	// The outbound side: the typical test plugin posts a signed JSON
	// notification for every egress event to a local sink.
	var sinkMu sync.Mutex
	received := map[string]string{} // idempotency key -> body
	duplicates := 0
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		sinkMu.Lock()
		defer sinkMu.Unlock()
		key := r.Header.Get("Idempotency-Key")
		if prev, ok := received[key]; ok {
			duplicates++
			if prev != string(body) {
				t.Errorf("duplicate %s with a different body: %s vs %s", key, prev, body)
			}
		}
		received[key] = string(body)
	}))
	defer sink.Close()
	if err := os.WriteFile(filepath.Join(dir, "typical.wasm"), plugintest.Build(t, "../plugin/testdata/plugins/typical"), 0o644); err != nil {
		t.Fatal(err)
	}
	plugins := writePlugins(t, dir, `plugins:
  - name: notify
    wasm: typical.wasm
    events: [egress_started, egress_updated, egress_ended]
    config: {url: "`+sink.URL+`/hook"}
    secrets: {key: {env: LKEDGE_TEST_HOOK_KEY}}
    allow: ["config:url"]
    delivery: {backoff: 50ms}
`)
	proc := testserver.StartLKEdge(t, map[string]string{
		"LIVEKIT_URL": lk.URL(), "LKEDGE_STORE": "file://" + dir, "LKEDGE_DATA_DIR": dir,
		"LKEDGE_PLUGINS": plugins, "LKEDGE_TEST_HOOK_KEY": "hook-secret",
	})

	var accepted, refused atomic.Int64
	client := &http.Client{Timeout: 5 * time.Second}
	send := func(body []byte) {
		for {
			tok, err := webhook.Sign(body, "devkey", "secret", time.Now())
			if err != nil {
				t.Error(err)
				return
			}
			req, _ := http.NewRequest(http.MethodPost, proc.URL+"/livekit/webhook", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/webhook+json")
			req.Header.Set("Authorization", tok)
			res, err := client.Do(req)
			if err == nil {
				res.Body.Close()
				if res.StatusCode == http.StatusOK {
					accepted.Add(1)
					return
				}
			}
			refused.Add(1)
			time.Sleep(50 * time.Millisecond)
		}
	}
	var wg sync.WaitGroup
	// Rooms start 25 ms apart and step every 40 ms: the load lasts about
	// two seconds, and the crashes fall inside it.
	for r := range rooms {
		wg.Go(func() {
			time.Sleep(time.Duration(r) * 25 * time.Millisecond)
			for step := range recordingSteps {
				send(recordingStep("crash", r, step))
				time.Sleep(40 * time.Millisecond)
			}
		})
	}
	for range 3 {
		time.Sleep(400 * time.Millisecond)
		proc.Kill()
		proc.Start()
	}
	wg.Wait()

	want := rooms * len(recordingSteps)
	if accepted.Load() != int64(want) {
		t.Fatalf("%d events accepted, want %d", accepted.Load(), want)
	}
	t.Logf("%d events accepted, %d attempts refused or cut off by the crashes", accepted.Load(), refused.Load())
	if refused.Load() == 0 {
		t.Fatal("no request met a crash: the test did not test anything")
	}
	eventually(t, 20*time.Second, "every recording final in the store", func() bool {
		for r := range rooms {
			b, err := os.ReadFile(filepath.Join(dir, "openvidu", "openvidu-meet", "recordings", ".metadata", fmt.Sprintf("crash-%d", r), fmt.Sprintf("EG_crash_%d", r), fmt.Sprintf("abc%d.json", r)))
			if err != nil || !strings.Contains(string(b), `"status":"COMPLETE"`) {
				return false
			}
		}
		return true
	})
	// At least once: every event's data message was sent, some perhaps
	// twice when a crash came between the effect and the journal's mark.
	if n := len(lk.SentData()); n < want {
		t.Errorf("%d data messages for %d accepted events: some event's work was lost", n, want)
	}
	eventually(t, 20*time.Second, "every outbound webhook at the sink", func() bool {
		sinkMu.Lock()
		defer sinkMu.Unlock()
		return len(received) >= want
	})
	sinkMu.Lock()
	for r := range rooms {
		for step := range recordingSteps {
			id := fmt.Sprintf("EV_crash_%d_%d", r, step)
			body := fmt.Sprintf(`{"event":"%s","id":"%s","room":"crash-%d"}`, recordingSteps[step].typ, id, r)
			if got := received[id+"/notify/0"]; got != body {
				t.Errorf("webhook for %s = %q, want %q", id, got, body)
			}
		}
	}
	if len(received) != want {
		t.Errorf("%d distinct webhooks at the sink, want %d", len(received), want)
	}
	t.Logf("%d webhooks at the sink, %d of them again after a crash (same key and body)", len(received), duplicates)
	sinkMu.Unlock()
	proc.Stop()
	j, err := journal.Open(JournalPath(dir), journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	pending, err := j.Pending()
	if err != nil || len(pending) != 0 {
		t.Errorf("pending after the load: %d, %v", len(pending), err)
	}
	failed, err := j.Failed()
	if err != nil || len(failed) != 0 {
		t.Errorf("failed events: %+v, %v", failed, err)
	}
}
