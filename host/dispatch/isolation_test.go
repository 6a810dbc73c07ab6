package dispatch

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lkedge/lkedge/host/deliver"
	"github.com/lkedge/lkedge/host/event"
	"github.com/lkedge/lkedge/host/plugin/plugintest"
)

// hookServer is an HTTP destination that records what reaches it.
type hookServer struct {
	*httptest.Server
	mu   sync.Mutex
	got  []received
	seen chan struct{}
}

type received struct {
	path, body string
	header     http.Header
	at         time.Time
}

func newHookServer(t *testing.T) *hookServer {
	t.Helper()
	h := &hookServer{seen: make(chan struct{}, 1)}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		h.got = append(h.got, received{path: r.URL.Path, body: string(b), header: r.Header.Clone(), at: time.Now()})
		h.mu.Unlock()
		select {
		case h.seen <- struct{}{}:
		default:
		}
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *hookServer) requests() []received {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]received(nil), h.got...)
}

// waitFor waits until n requests arrived, or fails after timeout.
func (h *hookServer) waitFor(t *testing.T, n int, timeout time.Duration) []received {
	t.Helper()
	deadline := time.After(timeout)
	for {
		if got := h.requests(); len(got) >= n {
			return got
		}
		select {
		case <-h.seen:
		case <-deadline:
			t.Fatalf("%d requests arrived within %s, want %d: %+v", len(h.requests()), timeout, n, h.requests())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// setupEmitter writes the emitter plugin and plugins.yaml into a folder.
func setupEmitter(t *testing.T, yaml string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "emitter.wasm"), plugintest.Build(t, "testdata/plugins/emitter"), 0o644); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "plugins.yaml"), yaml)
	return dir
}

// openOutbox opens a real outbox sending with secrets from d, and runs it.
func openOutbox(t *testing.T, dir string, secrets deliver.Secrets) *deliver.Outbox {
	t.Helper()
	o, err := deliver.Open(filepath.Join(dir, "outbox.db"), deliver.Options{Secrets: secrets, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { o.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		o.Close()
	})
	return o
}

type lateSecrets struct{ d *Dispatcher }

func (s *lateSecrets) Secret(plugin, name string) ([]byte, error) { return s.d.Secret(plugin, name) }

// TestBadRequestRefusedAtEmitAndAlone: a plugin asking for a request the
// outbox would refuse fails at once, with an error naming it, and the
// request another plugin asked for on the same event is delivered.
func TestBadRequestRefusedAtEmitAndAlone(t *testing.T) {
	t.Setenv("LKEDGE_TEST_KEY", "k")
	for _, tc := range []struct{ mode, reason string }{
		{"header-crlf", `bad header \"X-Note\"`},
		{"header-control", `header \"X-Note\": value contains control characters`},
		{"header-del", `header \"X-Note\": value contains control characters`},
		{"idempotency-control", "idempotency key contains control characters"},
		{"idempotency-crlf", "idempotency key contains control characters"},
		{"sign-header", `sign: invalid header name \"X Sig\"`},
		{"sign-timestamp-header", `sign: invalid header name \"X-TS\\n\"`},
		{"sign-timestamp", `sign: timestamp \"soon\" is not a decimal number`},
		{"sign-overrides", "sign: standard-webhooks takes no header, template or timestamp overrides"},
	} {
		mode := tc.mode
		t.Run(mode, func(t *testing.T) {
			hook := newHookServer(t)
			dir := setupEmitter(t, `plugins:
  - name: bad
    wasm: emitter.wasm
    events: ["*"]
    config: {url: "`+hook.URL+`/bad", mode: `+mode+`}
    secrets: {key: {env: LKEDGE_TEST_KEY}}
    allow: ["config:url"]
  - name: good
    wasm: emitter.wasm
    events: ["*"]
    config: {url: "`+hook.URL+`/good"}
    allow: ["config:url"]
`)
			secrets := &lateSecrets{}
			out := openOutbox(t, dir, secrets)
			var logs syncBuffer
			d := newDispatcherLog(t, dir, out, slog.New(slog.NewTextHandler(&logs, nil)))
			secrets.d = d
			ev := loadEvent(t, "egress_updated", true)
			if err := d.Handle(context.Background(), []*event.Event{ev}, slog.New(slog.DiscardHandler)); err != nil {
				t.Logf("Handle: %v", err)
			}
			got := hook.waitFor(t, 1, 10*time.Second)
			if got[0].path != "/good" || got[0].body != ev.ID {
				t.Errorf("received %s %q, want the good plugin's request", got[0].path, got[0].body)
			}
			waitLog(t, &logs, "plugin bad: output")
			if line := logLine(logs.String(), "plugin bad: output"); !strings.Contains(line, tc.reason) {
				t.Errorf("the failed call's line does not say %q:\n%s", tc.reason, line)
			}
			time.Sleep(50 * time.Millisecond)
			if got := hook.requests(); len(got) != 1 {
				t.Errorf("%d requests arrived, want only the good one: %+v", len(got), got)
			}
		})
	}
}

// syncBuffer is a log destination safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func waitLog(t *testing.T, logs *syncBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q in:\n%s", want, logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
