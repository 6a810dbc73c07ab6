package dispatch

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestCrashLoopPaused: a plugin whose calls crash on every event is paused
// after five in a row: its later calls are not made (no instance built, no
// slot held) while a well-behaved plugin on the same events goes on; after
// the pause one call tries it again, and a further crash pauses it longer.
func TestCrashLoopPaused(t *testing.T) {
	dir := setup(t, `plugins:
  - name: crashing
    wasm: misbehave.wasm
    events: ["*"]
    config: {mode: panic}
  - name: good
    wasm: typical.wasm
    events: ["*"]
    config: {url: "https://example.com/hook"}
    secrets: {key: {env: SOME_KEY}}
    allow: ["https://example.com"]
`)
	var logs bytes.Buffer
	out := &outbox{}
	opts := testOptions(dir, out, slog.New(slog.NewJSONHandler(&logs, nil)))
	opts.PauseFor = time.Minute // ended by the test, below, not by the clock
	d := newDispatcherOpts(t, opts)
	calls := func() float64 { return testutil.ToFloat64(d.m.calls.WithLabelValues("crashing", "trap")) }
	send := func(from, to int) {
		for i := from; i < to; i++ {
			if err := handle(t, d, eventIn(t, "participant_joined", fmt.Sprintf("EV_c%d", i), fmt.Sprintf("room-%d", i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	send(0, 12)
	// Each crashing call is tried twice (a fresh instance): five calls.
	if n := calls(); n != 2*crashLoopThreshold {
		t.Errorf("%v crashing attempts for 12 events, want %d: the plugin is paused after %d calls", n, 2*crashLoopThreshold, crashLoopThreshold)
	}
	if got := testutil.ToFloat64(d.m.paused.WithLabelValues("crashing")); got != 1 {
		t.Errorf("lkedge_plugin_paused = %v, want 1", got)
	}
	if n := len(out.take()); n != 12 {
		t.Errorf("%d requests of the good plugin stored, want 12\n%s", n, logs.String())
	}
	if c := strings.Count(logs.String(), `"msg":"plugin paused`); c != 1 {
		t.Errorf("%d pause lines, want 1:\n%s", c, logs.String())
	}
	// The pause ends.
	d.mu.Lock()
	d.health["crashing"].until = time.Now()
	d.mu.Unlock()
	before := calls()
	send(12, 16)
	if n := calls() - before; n != 2 {
		t.Errorf("%v crashing attempts after the pause, want one call (2 attempts) and a longer pause", n)
	}
	if !strings.Contains(logs.String(), `"paused_for":"2m0s"`) {
		t.Errorf("the second pause is not twice the first:\n%s", logs.String())
	}
}
