package service

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lkedge/lkedge/host/internal/testserver"
	"github.com/lkedge/lkedge/host/plugin/plugintest"
	"github.com/lkedge/lkedge/host/webhook"
)

// hostileModes are the misbehaving plugins of host/plugin's tests that
// cost their host something: CPU to their time limit, memory to their
// limit, a crash and a fresh instance, floods of actions and output.
var hostileModes = []string{"loop", "sleep", "membomb", "panic", "deadlock", "flood", "huge", "logflood", "stderr"}

// BenchmarkHostilePlugins runs a real `lkedge serve` with a well-behaved
// plugin, alone ("quiet") and next to a stream of hostile plugins on every
// event ("hostile"), and sends webhooks at a fixed rate (LKEDGE_BENCH_RATE,
// default 50/s, for LKEDGE_BENCH_SECONDS, default 20: the p99 of fewer
// samples is a handful of outliers). It reports the p50 and p99 of the
// time to answer a webhook (accept) and of the time from the answer to the
// well-behaved plugin's request at its destination (deliver). Run both in one invocation and compare:
//
//	go test -run '^$' -bench HostilePlugins -benchtime 1x -count 3 ./host/service
func BenchmarkHostilePlugins(b *testing.B) {
	rate, seconds := envInt("LKEDGE_BENCH_RATE", 50), envInt("LKEDGE_BENCH_SECONDS", 20)
	good := plugintest.Build(b, "../plugin/testdata/plugins/typical")
	bad := plugintest.Build(b, "../plugin/testdata/plugins/misbehave")
	for _, hostile := range []bool{false, true} {
		name := "quiet"
		if hostile {
			name = "hostile"
		}
		b.Run(name, func(b *testing.B) {
			for range b.N {
				accept, deliver := hostileRound(b, good, bad, hostile, rate, seconds)
				b.ReportMetric(pct(accept, 0.5), "accept-p50-ms")
				b.ReportMetric(pct(accept, 0.99), "accept-p99-ms")
				b.ReportMetric(pct(deliver, 0.5), "deliver-p50-ms")
				b.ReportMetric(pct(deliver, 0.99), "deliver-p99-ms")
			}
		})
	}
}

func pct(ds []time.Duration, p float64) float64 {
	s := slices.Clone(ds)
	slices.Sort(s)
	return float64(s[int(p*float64(len(s)-1))].Microseconds()) / 1000
}

// hostileRound starts one lkedge, sends rate webhooks a second for seconds,
// and returns the accept and delivery latencies of the good plugin.
func hostileRound(b *testing.B, good, bad []byte, hostile bool, rate, seconds int) (accept, deliver []time.Duration) {
	var mu sync.Mutex
	arrived := map[string]time.Time{}
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if _, ok := arrived[string(body)]; !ok {
			arrived[string(body)] = time.Now()
		}
	}))
	defer sink.Close()
	dir := b.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "good.wasm"), good, 0o644); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bad.wasm"), bad, 0o644); err != nil {
		b.Fatal(err)
	}
	var yaml strings.Builder
	fmt.Fprintf(&yaml, "plugins:\n  - name: good\n    wasm: good.wasm\n    events: [\"*\"]\n    rooms: all\n    config: {url: %q}\n    secrets: {key: {env: BENCH_HOOK_KEY}}\n    allow: [\"config:url\"]\n", sink.URL+"/hook")
	if hostile {
		for _, mode := range hostileModes {
			fmt.Fprintf(&yaml, "  - name: bad-%s\n    wasm: bad.wasm\n    events: [\"*\"]\n    rooms: all\n    config: {mode: %s, url: %q}\n    allow: [\"https://example.com\"]\n    limits: {timeout: 100ms, memory: 32MiB, instances: 1}\n", mode, mode, "https://example.com/hook")
		}
	}
	plugins := filepath.Join(dir, "plugins.yaml")
	if err := os.WriteFile(plugins, []byte(yaml.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	p := testserver.StartLKEdge(b, map[string]string{
		"LKEDGE_DATA_DIR": dir, "LKEDGE_STORE": "file://" + dir, "LKEDGE_PLUGINS": plugins,
		"BENCH_HOOK_KEY": "bench-secret", "LKEDGE_LOG_LEVEL": "error",
	})
	defer p.Stop()
	client := &http.Client{Timeout: 10 * time.Second}
	post := func(body []byte) (time.Duration, error) {
		tok, err := webhook.Sign(body, "devkey", "secret", time.Now())
		if err != nil {
			return 0, err
		}
		req, _ := http.NewRequest(http.MethodPost, p.URL+"/livekit/webhook", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/webhook+json")
		req.Header.Set("Authorization", tok)
		start := time.Now()
		res, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("status %d", res.StatusCode)
		}
		return time.Since(start), nil
	}
	// Warm up: the first calls start the instances.
	for i := range 5 {
		if _, err := post(fmt.Appendf(nil, `{"event":"participant_joined","id":"EV_warm_%d","room":{"name":"warm-%d"},"participant":{"identity":"p"}}`, i, i)); err != nil {
			b.Fatal(err)
		}
	}
	time.Sleep(2 * time.Second)
	answered := map[string]time.Time{}
	var wg sync.WaitGroup
	if hostile {
		wg.Go(func() { profile(b, []*testserver.LKEdgeProcess{p}, seconds) })
	}
	tick := time.NewTicker(time.Second / time.Duration(rate))
	for i := range rate * seconds {
		<-tick.C
		wg.Go(func() {
			id := fmt.Sprintf("EV_h%d", i)
			d, err := post(fmt.Appendf(nil, `{"event":"participant_joined","id":%q,"room":{"name":"room-%d"},"participant":{"identity":"p"}}`, id, i%50))
			if err != nil {
				b.Error(err)
				return
			}
			mu.Lock()
			accept = append(accept, d)
			answered[fmt.Sprintf(`{"event":"participant_joined","id":%q,"room":"room-%d"}`, id, i%50)] = time.Now()
			mu.Unlock()
		})
	}
	tick.Stop()
	wg.Wait()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		mu.Lock()
		deliver = deliver[:0]
		for body, at := range answered {
			if got, ok := arrived[body]; ok {
				deliver = append(deliver, max(0, got.Sub(at)))
			}
		}
		n := len(answered)
		mu.Unlock()
		if len(deliver) == n {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d requests of the good plugin arrived", len(deliver), n)
		}
	}
	return accept, deliver
}
