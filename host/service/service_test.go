package service

import (
	"bytes"
	"context"
	"fmt"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lkedge/lkedge/host/config"
	"github.com/lkedge/lkedge/host/event"
	"github.com/lkedge/lkedge/host/journal"
	"github.com/lkedge/lkedge/host/livekitapi/livekittest"
	"github.com/lkedge/lkedge/host/metrics"
	"github.com/lkedge/lkedge/host/webhook"
)

const (
	room     = "room-123"
	mdKey    = "openvidu/openvidu-meet/recordings/.metadata/room-123/EG_abc123XYZ/a1b2c3d4e5.json"
	roomJSON = `{"roomId":"room-123","creationDate":1,"moderatorRoomUrl":"http://h/room/room-123?secret=m0","publisherRoomUrl":"http://h/room/room-123?secret=p0"}`
)

// egressBody is a recording egress webhook of room-123 in the given state.
func egressBody(id, typ, status string, updatedNs string) []byte {
	return []byte(`{"event":"` + typ + `","id":"` + id + `","createdAt":"1745318182","egressInfo":{"egressId":"EG_abc123XYZ","roomName":"room-123","status":"` + status + `","startedAt":"1745318182123456789","updatedAt":"` + updatedNs + `","fileResults":[{"filename":"openvidu-meet/recordings/room-123/room-123--a1b2c3d4e5.mp4","duration":"10530865198","size":"1048576"}]}}`)
}

// recorder is a Sink that remembers what reached it.
type recorder struct {
	mu     sync.Mutex
	events []*event.Event
	got    chan struct{}
}

func newRecorder() *recorder { return &recorder{got: make(chan struct{}, 100)} }

func (r *recorder) sink(_ context.Context, evs []*event.Event, _ *slog.Logger) error {
	r.mu.Lock()
	r.events = append(r.events, evs...)
	r.mu.Unlock()
	r.got <- struct{}{}
	return nil
}

func (r *recorder) wait(t *testing.T, n int) []*event.Event {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		evs := append([]*event.Event(nil), r.events...)
		r.mu.Unlock()
		if len(evs) >= n {
			return evs
		}
		select {
		case <-r.got:
		case <-deadline:
			t.Fatalf("only %d of %d events reached the sink", len(evs), n)
		}
	}
}

type fixture struct {
	dir string
	lk  *livekittest.Server
	cfg *config.Config
}

func newFixture(t *testing.T) *fixture {
	dir := t.TempDir()
	lk := livekittest.New(t, "devkey", "secret")
	cfg := loadConfig(t, map[string]string{
		"LIVEKIT_URL": lk.URL(), "LKEDGE_LISTEN": "127.0.0.1:0", "LKEDGE_ADMIN_LISTEN": "127.0.0.1:0", "LKEDGE_STORE": "file://" + dir, "LKEDGE_DATA_DIR": dir,
	})
	writeRoomRecord(t, dir, room, roomJSON)
	return &fixture{dir: dir, lk: lk, cfg: cfg}
}

// writeRoomRecord puts OpenVidu Meet's record of room id into the file
// store at dir, as Meet does when it creates the room.
func writeRoomRecord(t testing.TB, dir, id, record string) {
	t.Helper()
	path := filepath.Join(dir, "openvidu", "openvidu-meet", "rooms", id, id+".json")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(record), 0o644); err != nil {
		t.Fatal(err)
	}
}

// start runs a service on the fixture until the test ends or stop is called.
func (f *fixture) start(t *testing.T, sink func(context.Context, []*event.Event, *slog.Logger) error) (url string, stop func()) {
	t.Helper()
	return serve(t, f.cfg, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Sink: sink})
}

// serve runs a service until the test ends or stop is called.
func serve(t *testing.T, cfg *config.Config, opts Options) (url string, stop func()) {
	t.Helper()
	svc, err := New(context.Background(), cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx, 0) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return "http://" + svc.Addr().String(), stop
}

// loadConfig is the configuration the environment env gives.
func loadConfig(t *testing.T, env map[string]string) *config.Config {
	t.Helper()
	cfg, err := config.Load("", false, func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func post(t *testing.T, url string, body []byte) int {
	t.Helper()
	return postAs(t, url, body, "devkey", "secret")
}

// postAs posts body signed by key as LiveKit would.
func postAs(t *testing.T, url string, body []byte, key, secret string) int {
	t.Helper()
	tok, err := webhook.Sign(body, key, secret, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, url+"/livekit/webhook", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/webhook+json")
	req.Header.Set("Authorization", tok)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}

// TestRecordingFlow drives the whole path — HTTP, verification, journal,
// pipeline, Meet logic, file store, LiveKit API — for one recording.
func TestRecordingFlow(t *testing.T) {
	f := newFixture(t)
	f.lk.SetRoom(room, `{"createdBy":"openviduMeet"}`)
	rec := newRecorder()
	url, _ := f.start(t, rec.sink)

	steps := []struct{ id, typ, status, updated, want string }{
		{"EV_1", "egress_started", "EGRESS_STARTING", "1745318182100000000", `"status":"STARTING"`},
		{"EV_2", "egress_updated", "EGRESS_ACTIVE", "1745318182200000000", `"status":"ACTIVE"`},
		{"EV_3", "egress_updated", "EGRESS_ENDING", "1745318192000000000", `"status":"ENDING"`},
		{"EV_4", "egress_ended", "EGRESS_COMPLETE", "1745318193000000000", `"status":"COMPLETE"`},
	}
	for i, s := range steps {
		if code := post(t, url, egressBody(s.id, s.typ, s.status, s.updated)); code != http.StatusOK {
			t.Fatalf("%s: status %d", s.id, code)
		}
		rec.wait(t, i+1)
		got, err := os.ReadFile(filepath.Join(f.dir, mdKey))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(got), s.want) {
			t.Errorf("%s: metadata %s lacks %s", s.id, got, s.want)
		}
	}
	if _, err := os.Stat(filepath.Join(f.dir, "openvidu/openvidu-meet/recordings/.metadata/room-123/room_metadata.json")); err != nil {
		t.Errorf("room_metadata.json: %v", err)
	}
	var topics []string
	for _, d := range f.lk.SentData() {
		topics = append(topics, d.Topic)
	}
	if want := "recordingStarting recordingStarted recordingStopping recordingStopped"; strings.Join(topics, " ") != want {
		t.Errorf("data message topics = %v, want %s", topics, want)
	}

	// LiveKit retries and duplicate deliveries are recognized: 200, not processed again.
	dupsBefore := testutil.ToFloat64(metrics.WebhooksDuplicate)
	if code := post(t, url, egressBody("EV_4", "egress_ended", "EGRESS_COMPLETE", "1745318193000000000")); code != http.StatusOK {
		t.Fatalf("duplicate: status %d", code)
	}
	// A late update does not move the stored state back.
	post(t, url, egressBody("EV_5", "egress_updated", "EGRESS_ACTIVE", "1745318182200000000"))
	evs := rec.wait(t, 5)
	if len(evs) != 5 || evs[4].ID != "EV_5" || !evs[4].Meet.Stale {
		t.Errorf("the late update should arrive once, marked stale: %d events", len(evs))
	}
	got, _ := os.ReadFile(filepath.Join(f.dir, mdKey))
	want := `{"recordingId":"room-123--EG_abc123XYZ--a1b2c3d4e5","roomId":"room-123","status":"COMPLETE","filename":"room-123--a1b2c3d4e5.mp4","startDate":1745318182123.4568,"duration":10.530865198,"size":1048576}`
	if string(got) != want {
		t.Errorf("final metadata\n got %s\nwant %s", got, want)
	}

	// The sink sees the last event before the pipeline counts it done.
	eventually(t, 5*time.Second, "the backlog drained", func() bool {
		return testutil.ToFloat64(metrics.Backlog) == 0
	})
	for path, wantCode := range map[string]int{"/healthz": 200, "/metrics": 200, "/nope": 404} {
		res, err := http.Get(url + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != wantCode {
			t.Errorf("GET %s = %d, want %d", path, res.StatusCode, wantCode)
		}
		if path == "/metrics" {
			if !bytes.Contains(body, fmt.Appendf(nil, "lkedge_webhooks_duplicate_total %g", dupsBefore+1)) {
				t.Errorf("/metrics lacks the duplicate count %g", dupsBefore+1)
			}
			for _, m := range []string{"lkedge_accept_seconds_count ", `lkedge_process_seconds_count{stage="meet"} `, `lkedge_process_seconds_count{stage="turn"} `, `lkedge_process_seconds_count{stage="admit"} `, "lkedge_backlog_events 0"} {
				if !bytes.Contains(body, []byte(m)) {
					t.Errorf("/metrics lacks %s", m)
				}
			}
		}
	}
}

// TestCrashReplay: an event accepted (200) but not finished when the process
// stops is finished by the next process, once, and its retry is still
// recognized as a duplicate.
func TestCrashReplay(t *testing.T) {
	f := newFixture(t)
	blocked := make(chan struct{})
	stuck := func(ctx context.Context, _ []*event.Event, _ *slog.Logger) error {
		close(blocked)
		<-ctx.Done() // the process dies mid-work
		return ctx.Err()
	}
	url, stop := f.start(t, stuck)
	body := egressBody("EV_crash", "egress_started", "EGRESS_STARTING", "1745318182100000000")
	if code := post(t, url, body); code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	<-blocked
	stop()

	j, err := journal.Open(JournalPath(f.dir), journal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	pending, err := j.Pending()
	j.Close()
	if err != nil || len(pending) != 1 || pending[0].ID != "EV_crash" {
		t.Fatalf("pending after the crash = %v, %v", pending, err)
	}

	rec := newRecorder()
	url, _ = f.start(t, rec.sink)
	evs := rec.wait(t, 1)
	if evs[0].ID != "EV_crash" {
		t.Fatalf("replayed %q", evs[0].ID)
	}
	if _, err := os.Stat(filepath.Join(f.dir, mdKey)); err != nil {
		t.Errorf("the replayed event's metadata: %v", err)
	}
	if code := post(t, url, body); code != http.StatusOK {
		t.Fatalf("retry after restart: status %d", code)
	}
	time.Sleep(200 * time.Millisecond)
	if n := len(rec.wait(t, 1)); n != 1 {
		t.Errorf("the retried delivery was processed again: %d events", n)
	}
}
