package plugin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"

	"github.com/lkedge/lkedge/host/plugin/plugintest"
)

// testCache spares the tests compiling the same module again.
var testCache = wazero.NewCompilationCache()

func readEvent(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile("../../testdata/events/egress_updated.event.json")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// allowExampleCom is the allow-list check the tests use: only
// https://example.com.
func allowExampleCom(a *Action) error {
	u, _ := url.Parse(a.URL)
	if u.Scheme != "https" || u.Host != "example.com" {
		return fmt.Errorf("destination %s://%s is not allowed", u.Scheme, u.Host)
	}
	return nil
}

type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestTypicalPlugin runs the benchmarks' typical plugin, in its two forms
// (sdk.Handle and sdk.HandleLazy), which must ask for the same request.
func TestTypicalPlugin(t *testing.T) {
	for _, dir := range []string{"typical", "typical-lazy"} {
		t.Run(dir, func(t *testing.T) { testTypicalPlugin(t, "testdata/plugins/"+dir) })
	}
}

func testTypicalPlugin(t *testing.T, dir string) {
	ctx := context.Background()
	p, err := Load(ctx, plugintest.Build(t, dir), Options{
		Cache: testCache, Name: "typical", Config: map[string]string{"url": "https://example.com/hook"}, CheckAction: allowExampleCom,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(ctx)
	actions, err := p.Call(ctx, readEvent(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(actions) != 1 {
		t.Fatalf("got %d actions, want 1", len(actions))
	}
	a := actions[0]
	want := `{"event":"egress_updated","id":"EV_x1","room":"room-123"}`
	if a.Method != "POST" || a.URL != "https://example.com/hook" || string(a.Body) != want {
		t.Errorf("action = %s %s %s, want POST https://example.com/hook %s", a.Method, a.URL, a.Body, want)
	}
	if a.Sign == nil || a.Sign.Scheme != SchemeHMAC || a.Sign.Secret != "key" {
		t.Errorf("sign = %+v", a.Sign)
	}
	if len(a.Headers) != 1 || a.Headers[0] != [2]string{"Content-Type", "application/json"} {
		t.Errorf("headers = %v", a.Headers)
	}
}

func TestLoadRefuses(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		wasm []byte
		want string
	}{
		{"not wasm", []byte("hello"), "not a WebAssembly binary"},
		{"future ABI", plugintest.Build(t, "testdata/plugins/abiv2"), "plugin speaks ABI v2; this lkedge speaks v1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(ctx, tc.wasm, Options{Name: "bad", Cache: testCache})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "plugin bad") {
				t.Fatalf("Load error = %v, want one naming the plugin and %q", err, tc.want)
			}
		})
	}
}

type misbehaviour struct {
	mode   string
	kind   string
	msg    string // in the error
	stderr string // in the captured stderr
}

// limit is the call time limit: short where the time limit is what stops
// the plugin, long where something else must stop it first, even on a
// loaded machine.
func (m misbehaviour) limit() time.Duration {
	if m.kind == KindTimeout {
		return 200 * time.Millisecond
	}
	return 5 * time.Second
}

// TestActionEmitForms: an action emitted the v1 way, its body inside the
// JSON (action_emit), and the way the SDK now emits it, the body beside the
// JSON (action_emit_body), reach the host as the same request, so plugins
// built before action_emit_body keep working.
func TestActionEmitForms(t *testing.T) {
	ctx := context.Background()
	wasm := plugintest.Build(t, "testdata/plugins/misbehave")
	event := readEvent(t)
	got := map[string][]Action{}
	for _, mode := range []string{"legacy", ""} {
		p, err := Load(ctx, wasm, Options{Cache: testCache, Name: "forms", Config: map[string]string{"mode": mode}, CheckAction: allowExampleCom})
		if err != nil {
			t.Fatal(err)
		}
		actions, err := p.Call(ctx, event, nil)
		p.Close(ctx)
		if err != nil || len(actions) != 1 {
			t.Fatalf("mode %q: %d actions, %v", mode, len(actions), err)
		}
		got[mode] = actions
	}
	if !reflect.DeepEqual(got["legacy"], got[""]) {
		t.Errorf("action_emit gave %+v\naction_emit_body gave %+v", got["legacy"][0], got[""][0])
	}
	if a := got[""][0]; !strings.HasPrefix(string(a.Body), "EV_") || a.Headers[0] != [2]string{"Content-Type", "text/plain"} {
		t.Errorf("action = %+v, want the event id as a text/plain body", a)
	}
}

// TestMisbehavingPlugins runs each misbehaviour next to a well-behaved
// plugin: the bad call fails with the right kind and a clear message, the
// bad instance is replaced, and the good plugin keeps answering.
func TestMisbehavingPlugins(t *testing.T) {
	ctx := context.Background()
	bad := plugintest.Build(t, "testdata/plugins/misbehave")
	event := readEvent(t)
	for _, tc := range []misbehaviour{
		{"loop", KindTimeout, "time limit of 200ms", ""},
		{"sleep", KindTimeout, "time limit of 200ms", ""},
		{"deadlock", KindTrap, "unreachable", "all goroutines are asleep - deadlock!"},
		{"membomb", KindTrap, "unreachable", "out of memory"},
		{"panic", KindTrap, "unreachable", "panic: boom from plugin"},
		{"exit", KindExit, "exited with code 3", ""},
		{"huge", KindOutput, "over the limit", ""},
		{"malformed", KindOutput, "malformed action", ""},
		{"bodytwice", KindOutput, "malformed action: body in the JSON of action_emit_body", ""},
		{"badbody", KindError, "action_emit_body: status -2", ""},
		{"flood", KindOutput, "more than 16 actions", ""},
		{"outside", KindOutput, "https://evil.example.net is not allowed", ""},
		{"loopback", KindOutput, "http://127.0.0.1:1 is not allowed", ""},
		{"metadata", KindOutput, "http://169.254.169.254 is not allowed", ""},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			var logs logBuf
			p, err := Load(ctx, bad, Options{
				Cache: testCache, Name: "bad-" + tc.mode, Config: map[string]string{"mode": tc.mode}, CheckAction: allowExampleCom,
				Limits: Limits{Timeout: tc.limit(), Memory: 32 << 20},
				Logger: slog.New(slog.NewTextHandler(&logs, nil)),
			})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close(ctx)
			for range 2 { // the second call runs in a fresh instance if the first broke its own
				start := time.Now()
				_, err = p.Call(ctx, event, nil)
				var ce *CallError
				if !errors.As(err, &ce) {
					t.Fatalf("Call error = %v, want a *CallError", err)
				}
				if ce.Kind != tc.kind || !strings.Contains(ce.Error(), tc.msg) || !strings.Contains(ce.Stderr, tc.stderr) {
					t.Fatalf("Call error = kind %s: %v; want kind %s with %q and stderr with %q", ce.Kind, ce, tc.kind, tc.msg, tc.stderr)
				}
				if !strings.Contains(ce.Error(), "plugin bad-"+tc.mode) {
					t.Errorf("error %q does not name the plugin", ce)
				}
				if d := time.Since(start); d > 2*time.Second {
					t.Errorf("call took %s", d)
				}
			}
			// A trap, an exit or a time limit discards the instance; a
			// handler that returned keeps it, refused output or not.
			want := int64(1)
			if tc.kind == KindTrap || tc.kind == KindExit || tc.kind == KindTimeout {
				want = 2
			}
			if got := p.Started(); got != want {
				t.Errorf("%d instances started for two calls, want %d", got, want)
			}
			// The well-behaved mode of the same plugin still works after
			// the failures: the pool replaced the broken instances.
			p.opts.Config = map[string]string{"mode": ""}
			if actions, err := p.Call(ctx, event, nil); err != nil || len(actions) != 1 {
				t.Fatalf("healthy call after %s: %d actions, %v", tc.mode, len(actions), err)
			}
		})
	}
}

func TestNoisyPluginsAreBounded(t *testing.T) {
	ctx := context.Background()
	bad := plugintest.Build(t, "testdata/plugins/misbehave")
	for _, mode := range []string{"stderr", "logflood"} {
		t.Run(mode, func(t *testing.T) {
			var logs logBuf
			// What is bounded here is the host log, not time: a flood
			// long enough to pause (runStretch) must not run into the
			// default limit on a loaded machine.
			p, err := Load(ctx, bad, Options{
				Cache: testCache, Name: "noisy", Config: map[string]string{"mode": mode}, CheckAction: allowExampleCom,
				Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
				Limits: Limits{Timeout: 20 * time.Second},
			})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close(ctx)
			actions, err := p.Call(ctx, readEvent(t), nil)
			if err != nil || len(actions) != 1 {
				t.Fatalf("Call = %d actions, %v", len(actions), err)
			}
			if n := logs.b.Len(); n > 64<<10 {
				t.Errorf("the plugin wrote %d bytes of host log", n)
			}
		})
	}
}

// TestConcurrentCalls checks that the pool is safe under concurrency and
// never holds more instances than its limit.
func TestConcurrentCalls(t *testing.T) {
	ctx := context.Background()
	p, err := Load(ctx, plugintest.Build(t, "testdata/plugins/typical"), Options{
		Cache: testCache, Name: "typical", Config: map[string]string{"url": "https://example.com/hook"}, Limits: Limits{Instances: 3},
	})
	if err != nil {
		t.Fatal(err)
	}
	event := readEvent(t)
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for range 8 {
		wg.Go(func() {
			for range 5 {
				if _, err := p.Call(ctx, event, nil); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := p.idle.len(); n > 3 {
		t.Errorf("%d idle instances, limit 3", n)
	}
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Call(ctx, event, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Call after Close = %v, want ErrClosed", err)
	}
}

// TestSpinningPluginDoesNotStallGC: compiled wasm cannot be preempted, so a
// plugin spinning in a loop could hold up a stop-the-world pause of Go's
// garbage collector, and with it the whole service, until its time limit.
// The interrupt checks call the host often enough for the collector to get
// through.
func TestSpinningPluginDoesNotStallGC(t *testing.T) {
	ctx := context.Background()
	p, err := Load(ctx, plugintest.Build(t, "testdata/plugins/misbehave"), Options{
		Cache: testCache, Name: "spin", Config: map[string]string{"mode": "loop"}, Limits: Limits{Timeout: 3 * time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(ctx)
	done := make(chan error, 1)
	go func() { _, err := p.Call(ctx, readEvent(t), nil); done <- err }()
	time.Sleep(200 * time.Millisecond) // let it spin
	var worst time.Duration
	for range 10 {
		start := time.Now()
		runtime.GC()
		worst = max(worst, time.Since(start))
	}
	if worst > 500*time.Millisecond {
		t.Errorf("a GC took %s while the plugin spun", worst)
	}
	if err := <-done; err == nil || !strings.Contains(err.Error(), "time limit") {
		t.Errorf("Call = %v, want a timeout", err)
	}
}

// TestMisbehaviourDoesNotSlowOthers runs a well-behaved plugin while a
// stream of misbehaving ones loops, bombs memory, panics, deadlocks and
// floods next to it: the good plugin's median latency stays within 2x of
// what it is alone.
func TestMisbehaviourDoesNotSlowOthers(t *testing.T) {
	if testing.Short() {
		t.Skip("measures latency")
	}
	ctx := context.Background()
	event := readEvent(t)
	good, err := Load(ctx, plugintest.Build(t, "testdata/plugins/typical"), Options{
		Cache: testCache, Name: "good", Config: map[string]string{"url": "https://example.com/hook"}, Limits: Limits{Instances: 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close(ctx)
	var bad []*Plugin
	for _, mode := range []string{"loop", "membomb", "panic", "deadlock", "flood", "huge", "malformed", "outside", "metadata"} {
		p, err := Load(ctx, plugintest.Build(t, "testdata/plugins/misbehave"), Options{
			Cache: testCache, Name: "bad-" + mode, Config: map[string]string{"mode": mode}, CheckAction: allowExampleCom,
			Limits: Limits{Timeout: 100 * time.Millisecond, Memory: 32 << 20, Instances: 1},
			Logger: slog.New(slog.DiscardHandler),
		})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close(ctx)
		bad = append(bad, p)
	}
	// Windows alone and crowded alternate, so that whatever else the
	// machine runs meanwhile (other packages' tests, under make test)
	// weighs on both sides alike.
	sample := func(window time.Duration, into *[]time.Duration) {
		for end := time.Now().Add(window); time.Now().Before(end); {
			start := time.Now()
			if _, err := good.Call(ctx, event, nil); err != nil {
				t.Fatal(err)
			}
			*into = append(*into, time.Since(start))
		}
	}
	var aloneD, crowdedD []time.Duration
	var failures atomic.Int64
	for round := 0; round < 4; round++ {
		sample(250*time.Millisecond, &aloneD)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			for i := round; ; i++ { // each round starts with another misbehaviour
				select {
				case <-stop:
					return
				default:
				}
				if _, err := bad[i%len(bad)].Call(ctx, event, nil); err != nil {
					failures.Add(1)
				}
			}
		})
		time.Sleep(50 * time.Millisecond)
		sample(500*time.Millisecond, &crowdedD) // every misbehaviour gets its turn over the rounds
		close(stop)
		wg.Wait()
	}
	median := func(d []time.Duration) time.Duration {
		slices.Sort(d)
		return d[len(d)/2]
	}
	alone, crowded := median(aloneD), median(crowdedD)
	t.Logf("good plugin median: alone %s, next to misbehaving plugins %s (%d bad calls failed meanwhile)", alone, crowded, failures.Load())
	if n := failures.Load(); n < int64(len(bad)) {
		t.Fatalf("only %d misbehaving calls ran", n)
	}
	if crowded > 2*alone {
		t.Errorf("median latency %s next to misbehaving plugins, over 2x the %s alone", crowded, alone)
	}
}

// TestShrink: a plugin keeps one warm instance of those a burst started,
// closes only those idle long enough, and calls still get an instance
// afterwards.
func TestShrink(t *testing.T) {
	ctx := context.Background()
	p := loadIdle(t, 3)
	if closed := p.Shrink(1, time.Hour); closed != 0 || p.Instances() != 3 {
		t.Errorf("Shrink(1, 1h) closed %d, leaving %d instances; want none closed", closed, p.Instances())
	}
	if closed := p.Shrink(1, 0); closed != 2 || p.Instances() != 1 || p.idle.len() != 1 {
		t.Errorf("Shrink(1, 0) closed %d, leaving %d instances (%d idle); want 2 closed, 1 left idle", closed, p.Instances(), p.idle.len())
	}
	if _, err := p.Call(ctx, readEvent(t), nil); err != nil {
		t.Fatal(err)
	}
	if closed := p.Shrink(0, 0); closed != 1 || p.Instances() != 0 {
		t.Errorf("Shrink(0, 0) closed %d, leaving %d instances", closed, p.Instances())
	}
	if _, err := p.Call(ctx, readEvent(t), nil); err != nil {
		t.Errorf("a call after every instance was closed: %v", err)
	}
}

// TestCallTakesTheInstanceUsedLast: calls one at a time all run in the
// same instance, so the others a burst started stay idle and go at the
// next Shrink. Handed out in turn, every instance would have had a call
// within the last few milliseconds.
func TestCallTakesTheInstanceUsedLast(t *testing.T) {
	ctx := context.Background()
	p := loadIdle(t, 3)
	time.Sleep(200 * time.Millisecond)
	for range 6 {
		if _, err := p.Call(ctx, readEvent(t), nil); err != nil {
			t.Fatal(err)
		}
	}
	if closed := p.Shrink(1, 100*time.Millisecond); closed != 2 {
		t.Errorf("Shrink closed %d instances idle for 100 ms after six calls in a row; want the 2 they did not use", closed)
	}
}

// loadIdle loads the typical plugin with n warm idle instances.
func loadIdle(t *testing.T, n int) *Plugin {
	t.Helper()
	ctx := context.Background()
	p, err := Load(ctx, plugintest.Build(t, "testdata/plugins/typical"), Options{
		Cache: testCache, Name: "typical", Config: map[string]string{"url": "https://example.com/hook"}, Limits: Limits{Instances: n},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(ctx) })
	for p.idle.len() < n {
		inst, err := p.newInstance(ctx)
		if err != nil {
			t.Fatal(err)
		}
		p.idle.put(inst)
	}
	return p
}

// TestValidatedDir: a module's verdict is kept in ValidatedDir, and a
// verdict found there stands for the validation a restart skips.
func TestValidatedDir(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "validated")
	wasm := plugintest.Build(t, "testdata/plugins/typical")
	validated.Clear()
	if _, err := Load(ctx, wasm, Options{Cache: testCache, Name: "typical", ValidatedDir: dir}); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(wasm)
	if _, err := os.Stat(filepath.Join(dir, hex.EncodeToString(sum[:]))); err != nil {
		t.Errorf("no verdict kept: %v", err)
	}

	invalid := []byte("\x00asm\x01\x00\x00\x00\x01\x04\x01\x60\x00") // a type section cut short
	if err := validate(ctx, invalid, dir, slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("an invalid module passed validation")
	}
	bad := sha256.Sum256(invalid)
	if err := os.WriteFile(filepath.Join(dir, hex.EncodeToString(bad[:])), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := validate(ctx, invalid, dir, slog.New(slog.DiscardHandler)); err != nil {
		t.Errorf("a kept verdict was not used: %v", err)
	}
	validated.Clear()
}

// countingSleeper counts what a call tells its Sleeper.
type countingSleeper struct{ sleeps, wakes, yields atomic.Int64 }

func (s *countingSleeper) Sleep() { s.sleeps.Add(1) }
func (s *countingSleeper) Wake()  { s.wakes.Add(1) }
func (s *countingSleeper) Yield() { s.yields.Add(1) }

// TestYieldAfterAStretch: a call offers its place only after each
// runStretch of running. A short call never does; one that spins offers it
// once per stretch and pause, not at every look at the clock.
func TestYieldAfterAStretch(t *testing.T) {
	ctx := context.Background()
	const spin = 60 * time.Millisecond
	for _, tc := range []struct {
		name     string
		wasm     string
		config   map[string]string
		min, max int64
	}{
		{"a short call", "typical", map[string]string{"url": "https://example.com/hook"}, 0, 0},
		// Each stretch is runStretch of running and pauseFor asleep.
		{"a call that spins to its limit", "misbehave", map[string]string{"mode": "loop"},
			int64(spin / (4 * (runStretch + pauseFor))), int64(spin/(runStretch+pauseFor)) + 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Load(ctx, plugintest.Build(t, "testdata/plugins/"+tc.wasm), Options{
				Cache: testCache, Name: tc.wasm, Config: tc.config, Limits: Limits{Timeout: spin},
			})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close(ctx)
			// A first call warms the instance: the next one is what is counted.
			_, _ = p.Call(ctx, readEvent(t), nil)
			var s countingSleeper
			_, _ = p.Call(WithSleeper(ctx, &s), readEvent(t), nil)
			if n := s.yields.Load(); n < tc.min || n > tc.max {
				t.Errorf("%d yields, want %d to %d", n, tc.min, tc.max)
			}
			if s.sleeps.Load() != s.wakes.Load() {
				t.Errorf("%d sleeps, %d wakes", s.sleeps.Load(), s.wakes.Load())
			}
		})
	}
}
