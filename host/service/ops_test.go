package service

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/valyala/fasthttp"

	"github.com/lkedge/lkedge/host/event"
	"github.com/lkedge/lkedge/host/journal"
	"github.com/lkedge/lkedge/host/pipeline"
)

// syncFailFS is the real file system whose fdatasyncs fail with EIO while
// fail is set.
type syncFailFS struct {
	journal.OSFS
	fail atomic.Bool
}

func (f *syncFailFS) OpenFile(name string, flag int, perm os.FileMode) (journal.File, error) {
	file, err := f.OSFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return syncFailFile{file, f}, nil
}

type syncFailFile struct {
	journal.File
	fs *syncFailFS
}

func (f syncFailFile) Datasync() error {
	if f.fs.fail.Load() {
		return syscall.EIO
	}
	return f.File.Datasync()
}

// TestJournalBroken: once an fdatasync of the journal fails, /readyz says
// not ready naming the journal, lkedge_journal_broken is 1, webhooks get
// 503 and Run returns an error (the process exits non-zero for its
// supervisor); a service started again on the same data accepts webhooks.
func TestJournalBroken(t *testing.T) {
	f := newFixture(t)
	fsys := &syncFailFS{}
	opts := Options{Logger: slog.New(slog.DiscardHandler), Sink: newRecorder().sink, JournalFS: fsys}
	svc, err := New(context.Background(), f.cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + svc.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx, time.Second) }()
	if code := post(t, url, egressBody("EV_ok", "egress_started", "EGRESS_STARTING", "1745318182100000000")); code != http.StatusOK {
		t.Fatalf("before the failure: status %d", code)
	}
	var rctx fasthttp.RequestCtx
	svc.readyz(&rctx)
	if rctx.Response.StatusCode() != http.StatusOK {
		t.Fatalf("readyz before the failure: %d %s", rctx.Response.StatusCode(), rctx.Response.Body())
	}

	fsys.fail.Store(true)
	if code := post(t, url, egressBody("EV_lost", "egress_updated", "EGRESS_ACTIVE", "1745318182200000000")); code != http.StatusServiceUnavailable {
		t.Fatalf("during the failure: status %d, want 503", code)
	}
	rctx = fasthttp.RequestCtx{}
	svc.readyz(&rctx)
	if body := string(rctx.Response.Body()); rctx.Response.StatusCode() != http.StatusServiceUnavailable || !strings.Contains(body, "journal: fdatasync of segment") {
		t.Fatalf("readyz after the failure: %d %q, want 503 naming the journal", rctx.Response.StatusCode(), body)
	}
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "journal is broken") || !errors.Is(err, syscall.EIO) {
			t.Fatalf("Run = %v, want the broken journal's error", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return after the journal broke")
	}
	if v := testutil.ToFloat64(journalBroken); v != 1 {
		t.Fatalf("lkedge_journal_broken = %v, want 1", v)
	}

	// The restart: the disk answers again and the journal is read back.
	fsys.fail.Store(false)
	url, _ = serve(t, f.cfg, opts)
	if v := testutil.ToFloat64(journalBroken); v != 0 {
		t.Fatalf("lkedge_journal_broken after the restart = %v, want 0", v)
	}
	if code := post(t, url, egressBody("EV_lost", "egress_updated", "EGRESS_ACTIVE", "1745318182200000000")); code != http.StatusOK {
		t.Fatalf("after the restart: status %d", code)
	}
}

// TestFailedEventsAPI: an event that used up its attempts is listed, shown
// and, once retried, processed through the pipeline to the sink; it is then
// no longer failed.
func TestFailedEventsAPI(t *testing.T) {
	f := newFixture(t)
	rec := newRecorder()
	var healthy atomic.Bool
	sink := func(ctx context.Context, evs []*event.Event, log *slog.Logger) error {
		if !healthy.Load() {
			return errors.New("sink answered 500")
		}
		return rec.sink(ctx, evs, log)
	}
	svc, err := New(context.Background(), f.cfg, Options{Logger: slog.New(slog.DiscardHandler), Sink: sink,
		Pipeline: pipeline.Options{MaxAttempts: 1}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx, time.Second) }()
	t.Cleanup(func() { cancel(); <-done })
	url, admin := "http://"+svc.Addr().String(), "http://"+svc.AdminAddr().String()

	call := func(method, path string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, admin+path, nil)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if code, body := call("GET", "/events/failed"); code != 200 || strings.TrimSpace(body) != "[]" {
		t.Fatalf("empty list: %d %q, want 200 []", code, body)
	}
	if code := post(t, url, egressBody("EV_fail", "egress_started", "EGRESS_STARTING", "1745318182100000000")); code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	if code := post(t, url, []byte(`{"event":"room_started","id":"EV_turn","room":{"name":"room-9","turnPassword":"hunter2"}}`)); code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	var list []map[string]any
	deadline := time.Now().Add(10 * time.Second)
	for len(list) < 2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		_, body := call("GET", "/events/failed")
		list = nil
		if err := json.Unmarshal([]byte(body), &list); err != nil {
			t.Fatalf("list %q: %v", body, err)
		}
	}
	if len(list) != 2 || list[0]["id"] != "EV_fail" || list[0]["event"] != "egress_started" || list[0]["reason"] != "sink answered 500" || list[1]["id"] != "EV_turn" {
		t.Fatalf("failed list = %v", list)
	}
	// The operator API never shows the TURN password LiveKit put in the event.
	if code, body := call("GET", "/events/failed/show?id=EV_turn"); code != 200 || strings.Contains(body, "hunter2") || !strings.Contains(body, `"name": "room-9"`) {
		t.Fatalf("show of an event with a TURN password: %d %s", code, body)
	}
	code, body := call("GET", "/events/failed/show?id=EV_fail")
	if code != 200 || !strings.Contains(body, `"egressId": "EG_abc123XYZ"`) || !strings.Contains(body, `"failed_at"`) {
		t.Fatalf("show: %d %s", code, body)
	}
	if code, body := call("GET", "/events/failed/show?id=EV_nope"); code != 404 || strings.TrimSpace(body) != "no failed event EV_nope" {
		t.Fatalf("show of a missing id: %d %q", code, body)
	}
	if code, _ := call("POST", "/events/failed/retry?id=EV_nope"); code != 404 {
		t.Fatalf("retry of a missing id: %d", code)
	}

	healthy.Store(true)
	if code, body := call("POST", "/events/failed/retry?id=EV_fail"); code != 200 || !strings.Contains(body, `"retried": "EV_fail"`) {
		t.Fatalf("retry: %d %s", code, body)
	}
	if evs := rec.wait(t, 1); evs[0].ID != "EV_fail" {
		t.Fatalf("the sink got %s, want EV_fail", evs[0].ID)
	}
	if code, body := call("GET", "/events/failed"); code != 200 || strings.Contains(body, "EV_fail") || !strings.Contains(body, "EV_turn") {
		t.Fatalf("list after the retry: %d %q, want only EV_turn", code, body)
	}
}
