package service

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lkedge/lkedge/host/plugin/plugintest"
)

// sink is a webhook receiver that fails its first failures requests with
// 503 and records the rest.
type sink struct {
	mu       sync.Mutex
	failures int
	attempts int
	got      []*http.Request
	bodies   [][]byte
	srv      *httptest.Server
}

func newSink(t *testing.T, failures int) *sink {
	s := &sink{failures: failures}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		defer s.mu.Unlock()
		s.attempts++
		if s.attempts <= s.failures {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		s.got = append(s.got, r)
		s.bodies = append(s.bodies, body)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *sink) wait(t *testing.T, n int) ([]*http.Request, [][]byte) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		if len(s.got) >= n {
			defer s.mu.Unlock()
			return append([]*http.Request(nil), s.got...), append([][]byte(nil), s.bodies...)
		}
		s.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("the sink did not receive %d requests", n)
	return nil, nil
}

func writePlugins(t testing.TB, dir, yaml string) string {
	t.Helper()
	path := filepath.Join(dir, "plugins.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// withTypicalPlugin is a service fixture whose plugins.yaml runs the typical
// test plugin on egress_updated, posting to a sink that fails twice first,
// under the given delivery policy.
func withTypicalPlugin(t *testing.T, delivery string) (*fixture, *sink) {
	t.Helper()
	return withTypical(t, 2, "    events: [egress_updated]\n    delivery: "+delivery+"\n")
}

// withTypical is a service fixture whose plugins.yaml runs the typical test
// plugin with the given further lines of its entry (events, rooms,
// delivery), posting to a sink that fails its first failures requests,
// signed with the secret "hook-secret".
func withTypical(t *testing.T, failures int, entry string) (*fixture, *sink) {
	t.Helper()
	f := newFixture(t)
	wasm := plugintest.Build(t, "../plugin/testdata/plugins/typical")
	if err := os.WriteFile(filepath.Join(f.dir, "typical.wasm"), wasm, 0o644); err != nil {
		t.Fatal(err)
	}
	s := newSink(t, failures)
	t.Setenv("LKEDGE_TEST_HOOK_KEY", "hook-secret")
	f.cfg.PluginsFile = writePlugins(t, f.dir, `plugins:
  - name: typical
    wasm: typical.wasm
    config: {url: "`+s.srv.URL+`/hook"}
    secrets: {key: {env: LKEDGE_TEST_HOOK_KEY}}
    allow: ["config:url"]
`+entry)
	return f, s
}

// TestPluginDeliversSignedWebhook is the whole path: a signed LiveKit
// webhook is accepted, the Meet logic runs, a wasm plugin asks for a
// signed request, and the host delivers it through a sink that fails
// twice first.
func TestPluginDeliversSignedWebhook(t *testing.T) {
	f, s := withTypicalPlugin(t, "{backoff: 20ms}")
	url, _ := f.start(t, nil)
	if code := post(t, url, egressBody("EV_p1", "egress_updated", "EGRESS_ACTIVE", "1745318182200000000")); code != 200 {
		t.Fatalf("webhook answered %d", code)
	}
	reqs, bodies := s.wait(t, 1)
	r, body := reqs[0], bodies[0]
	if want := `{"event":"egress_updated","id":"EV_p1","room":"room-123"}`; string(body) != want {
		t.Errorf("body = %s, want %s", body, want)
	}
	mac := hmac.New(sha256.New, []byte("hook-secret"))
	mac.Write([]byte(r.Header.Get("X-Timestamp") + "." + string(body)))
	if got, want := r.Header.Get("X-Signature"), hex.EncodeToString(mac.Sum(nil)); got != want {
		t.Errorf("X-Signature = %q, want %q", got, want)
	}
	if got := r.Header.Get("Idempotency-Key"); got != "EV_p1/typical/0" {
		t.Errorf("Idempotency-Key = %q", got)
	}
	if s.attempts != 3 {
		t.Errorf("%d attempts, want 3 (two 503s, then success)", s.attempts)
	}
}

// TestDeadLetterReplay: a destination that never succeeds ends in the
// dead-letter store; the admin API lists it and replays it once the
// destination recovered.
func TestDeadLetterReplay(t *testing.T) {
	f, s := withTypicalPlugin(t, "{attempts: 2, backoff: 10ms}")
	svc, err := New(t.Context(), f.cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx, 0) }()
	defer func() { cancel(); <-done }()
	if code := post(t, "http://"+svc.Addr().String(), egressBody("EV_d1", "egress_updated", "EGRESS_ACTIVE", "1745318182200000000")); code != 200 {
		t.Fatalf("webhook answered %d", code)
	}
	admin := "http://" + svc.AdminAddr().String()
	var dls []struct {
		ID       string `json:"id"`
		Attempts int    `json:"attempts"`
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(dls) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		getJSON(t, admin+"/dlq", &dls)
	}
	if len(dls) != 1 || dls[0].ID != "EV_d1/typical/0" || dls[0].Attempts != 2 {
		t.Fatalf("dead letters = %+v", dls)
	}
	// What dlq show prints: lower-case keys, the body as text, durations
	// as an operator writes them.
	resp, err := http.Get(admin + "/dlq/show?id=EV_d1/typical/0")
	if err != nil {
		t.Fatal(err)
	}
	shown, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`"id": "EV_d1/typical/0"`, `"body": "{\"event\":\"egress_updated\",\"id\":\"EV_d1\"`, `"backoff": "10ms"`, `"timeout": "5s"`, `"attempts": 2`} {
		if !strings.Contains(string(shown), want) {
			t.Errorf("dlq/show lacks %s:\n%s", want, shown)
		}
	}
	if strings.Contains(string(shown), "Delivery") || strings.Contains(string(shown), "10000000") {
		t.Errorf("dlq/show has Go field names or nanoseconds:\n%s", shown)
	}
	resp, err = http.Get(admin + "/dlq/show?id=EV_nope/typical/0")
	if err != nil {
		t.Fatal(err)
	}
	missing, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 404 || string(missing) != "no dead letter EV_nope/typical/0\n" {
		t.Errorf("dlq/show of a missing id: %d %q", resp.StatusCode, missing)
	}
	resp, err = http.Post(admin+"/dlq/replay?id=EV_d1/typical/0", "", nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("replay: %v %v", resp, err)
	}
	resp.Body.Close()
	_, bodies := s.wait(t, 1)
	if !strings.Contains(string(bodies[0]), `"id":"EV_d1"`) {
		t.Errorf("replayed body = %s", bodies[0])
	}
	getJSON(t, admin+"/dlq", &dls)
	if len(dls) != 0 {
		t.Errorf("dead letters after replay = %+v", dls)
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}
