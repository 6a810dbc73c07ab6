package service

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/lkedge/lkedge/host/internal/testserver"
	"github.com/lkedge/lkedge/host/plugin/plugintest"
)

// TestOneWarmInstancePerPluginOnTwoCores drives the binary on two cores
// (one plugin call at a time, LKEDGE_PLUGIN_CONCURRENCY's default) with
// events for many rooms at once, to a plugin whose calls run long enough
// to yield their place at each stretch and whose instances limit is 4. A
// second call of the plugin in flight could only take turns with the
// first, each in a warm instance of its own: the plugin must keep one
// instance, as /metrics shows, and every request must reach the sink.
func TestOneWarmInstancePerPluginOnTwoCores(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var mu sync.Mutex
	got := map[string]bool{}
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got[string(b)] = true
		mu.Unlock()
	}))
	defer sink.Close()
	if err := os.WriteFile(filepath.Join(dir, "spin.wasm"), plugintest.Build(t, "../dispatch/testdata/plugins/emitter"), 0o644); err != nil {
		t.Fatal(err)
	}
	// About 20 ms a call, most of it in pauses, each after a stretch.
	plugins := writePlugins(t, dir, `plugins:
  - name: spin
    wasm: spin.wasm
    events: [participant_joined]
    rooms: all
    config: {url: "`+sink.URL+`/hook", spin: "1000000"}
    limits: {instances: 4, timeout: 10s}
    allow: ["config:url"]
`)
	proc := testserver.StartLKEdge(t, map[string]string{
		"LKEDGE_STORE": "file://" + dir, "LKEDGE_DATA_DIR": dir, "LKEDGE_PLUGINS": plugins, "GOMAXPROCS": "2",
	})
	const rooms = 16
	var wg sync.WaitGroup
	for r := range rooms {
		wg.Go(func() {
			body := fmt.Appendf(nil, `{"event":"participant_joined","id":"EV_inst_%d","room":{"name":"inst-%d"},"participant":{"identity":"p"}}`, r, r)
			res, err := postWebhook(http.DefaultClient, proc.URL, body)
			if err != nil {
				t.Error(err)
				return
			}
			res.Body.Close()
			if res.StatusCode != http.StatusOK {
				t.Errorf("room %d: status %d", r, res.StatusCode)
			}
		})
	}
	wg.Wait()
	eventually(t, 60*time.Second, "every room's request at the sink", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == rooms
	})
	if n := metric(t, proc.URL, `lkedge_plugin_instances{plugin="spin"}`); n != 1 {
		t.Errorf("the plugin has %g instances, want 1", n)
	}
	if n := metric(t, proc.URL, `lkedge_plugin_calls_total{outcome="ok",plugin="spin"}`); n != rooms {
		t.Errorf("%g calls succeeded, want %d", n, rooms)
	}
}
