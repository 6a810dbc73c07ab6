package deliver

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// clock is a settable wall clock for Options.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 4, 22, 10, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// hit is one request a sink received.
type hit struct {
	id     string // the request body: tests use the delivery id as body
	path   string
	header http.Header
	at     time.Time
}

// sink is a local HTTP destination. handle decides the answer; nth counts
// earlier requests with the same body, so "fail N times then succeed" is a
// one-liner. A handler that returns 0 has written the response itself.
type sink struct {
	srv    *httptest.Server
	mu     sync.Mutex
	hits   []hit
	handle func(w http.ResponseWriter, r *http.Request, nth int) int
}

func newSink(t *testing.T, handle func(w http.ResponseWriter, r *http.Request, nth int) int) *sink {
	t.Helper()
	s := &sink{handle: handle}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		nth := 0
		for _, h := range s.hits {
			if h.id == string(body) {
				nth++
			}
		}
		s.hits = append(s.hits, hit{id: string(body), path: r.URL.Path, header: r.Header.Clone(), at: time.Now()})
		s.mu.Unlock()
		if code := s.handle(w, r, nth); code != 0 {
			w.WriteHeader(code)
		}
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func okSink(t *testing.T) *sink {
	return newSink(t, func(http.ResponseWriter, *http.Request, int) int { return http.StatusOK })
}

func (s *sink) all() []hit {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]hit(nil), s.hits...)
}

func (s *sink) hitsFor(id string) []hit {
	var out []hit
	for _, h := range s.all() {
		if h.id == id {
			out = append(out, h)
		}
	}
	return out
}

// delivery builds a delivery to s whose body is its id, with millisecond
// retries so tests stay fast.
func (s *sink) delivery(id, resource string) Delivery {
	return Delivery{
		ID:             id,
		Plugin:         "plug",
		EventID:        "evt",
		Resource:       resource,
		URL:            s.srv.URL + "/hook",
		Body:           []byte(id),
		IdempotencyKey: "idem-" + id,
		Policy: Policy{
			Attempts:   3,
			Backoff:    time.Millisecond,
			MaxBackoff: 5 * time.Millisecond,
			Timeout:    2 * time.Second,
			Allow:      []string{s.srv.URL},
		},
	}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// testOptions are fast, deterministic options: no jitter, short breaker.
// testOptions keeps one record in memory, so that every test runs both
// kinds of pending delivery: the first with its record, the rest reading it
// when attempted.
func testOptions() Options {
	return Options{Jitter: -1, Logger: quietLogger(), BreakerCooldown: 20 * time.Millisecond, RecordsInMemory: 1}
}

func openAt(t *testing.T, path string, opts Options) *Outbox {
	t.Helper()
	o, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = o.Close() })
	return o
}

func openOutbox(t *testing.T, opts Options) *Outbox {
	t.Helper()
	return openAt(t, filepath.Join(t.TempDir(), "outbox.db"), opts)
}

// start runs o until the returned stop is called (also at cleanup).
func start(t *testing.T, o *Outbox) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		o.Run(ctx)
		close(done)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}
	t.Cleanup(stop)
	return stop
}

func enqueue(t *testing.T, o *Outbox, ds ...Delivery) {
	t.Helper()
	if err := o.Enqueue(context.Background(), ds); err != nil {
		t.Fatalf("Enqueue: %v", err)
	}
}

func waitIdle(t *testing.T, o *Outbox, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := o.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
}

// eventually polls cond until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// stored returns the pending record of id as persisted, or nil.
func stored(t *testing.T, o *Outbox, id string) *record {
	t.Helper()
	var r *record
	err := o.db.View(func(tx *bolt.Tx) error {
		seq := tx.Bucket(bucketPendingIDs).Get([]byte(id))
		if seq == nil {
			return nil
		}
		var err error
		r, err = decodeRecord(tx.Bucket(bucketPending).Get(seq))
		if err == nil {
			r.Delivery.Body = pendingBody(tx, binary.BigEndian.Uint64(seq), r)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func bucketLen(t *testing.T, o *Outbox, name []byte) int {
	t.Helper()
	var n int
	if err := o.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(name).Stats().KeyN
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

// secrets is a map-backed Secrets.
type secrets map[string]string

var errNoSecret = errors.New("no such secret")

func (s secrets) Secret(plugin, name string) ([]byte, error) {
	v, ok := s[plugin+"/"+name]
	if !ok {
		return nil, errNoSecret
	}
	return []byte(v), nil
}
