package dispatch

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lkedge/lkedge/host/deliver"
	"github.com/lkedge/lkedge/host/event"
	"github.com/lkedge/lkedge/host/internal/proccpu"
	"github.com/lkedge/lkedge/host/plugin/plugintest"
)

// secretsOf lets the outbox, opened before the dispatcher, resolve the
// plugins' secrets, as the service wires them.
type secretsOf struct{ d *Dispatcher }

func (s *secretsOf) Secret(plugin, name string) ([]byte, error) { return s.d.Secret(plugin, name) }

// BenchmarkPluginStage is the whole plugin stage for one event, as the
// pipeline runs it: the call recorded by the sink, the built-in
// standard-webhooks plugin called on a participant_joined event (16 rooms
// in turn), its signed request stored in the outbox and delivered to a
// local sink, the sink called from 16 goroutines as the pipeline's
// workers call it. cpu-ns/op is the process's CPU per event (decoding it, and the
// sink's share, included); "none" is the same with no plugin subscribed.
func BenchmarkPluginStage(b *testing.B) {
	wasm := plugintest.Build(b, "../../plugins/standard-webhooks")
	body, err := os.ReadFile(filepath.Join("../../testdata/events", "participant_joined.webhook.json"))
	if err != nil {
		b.Fatal(err)
	}
	var bodies [16][]byte
	for i := range bodies {
		bodies[i] = bytes.Replace(body, []byte(`"name":"room-123"`), fmt.Appendf(nil, `"name":"room-%d"`, i), 1)
	}
	var got atomic.Int64
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		got.Add(1)
	}))
	defer sink.Close()
	b.Setenv("BENCH_SIGNING_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	for _, bc := range []struct {
		name, yaml string
		sends      bool
	}{
		{"none", "plugins: []\n", false},
		{"standard-webhooks", fmt.Sprintf(`plugins:
  - name: standard-webhooks
    wasm: sw.wasm
    events: ["*"]
    rooms: all
    config:
      url: %q
    secrets:
      signing_secret: {env: BENCH_SIGNING_SECRET}
    allow: ["config:url"]
`, sink.URL+"/hook"), true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			dir := b.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "sw.wasm"), wasm, 0o644); err != nil {
				b.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "plugins.yaml"), []byte(bc.yaml), 0o644); err != nil {
				b.Fatal(err)
			}
			quiet := slog.New(slog.DiscardHandler)
			secrets := &secretsOf{}
			out, err := deliver.Open(filepath.Join(dir, "outbox.db"), deliver.Options{Secrets: secrets, Logger: quiet})
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			d, err := New(ctx, Options{Path: filepath.Join(dir, "plugins.yaml"), DB: out.DB(), Outbox: out, CacheDir: cacheDir, Logger: quiet})
			if err != nil {
				b.Fatal(err)
			}
			secrets.d = d
			running := make(chan struct{})
			go func() { out.Run(ctx); close(running) }()
			got.Store(0)
			var next atomic.Int64
			cpu0 := proccpu.Used()
			b.SetParallelism(16) // the pipeline's workers, on GOMAXPROCS=1
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					n := next.Add(1)
					ev, err := event.FromWebhook(bodies[n%16], time.Now())
					if err != nil {
						b.Error(err)
						return
					}
					ev.ID = fmt.Sprintf("EV_%d", n)
					ev.Meet = &event.Meet{RoomID: ev.RoomName()}
					if err := d.Handle(ctx, []*event.Event{ev}, quiet); err != nil {
						b.Error(err)
						return
					}
				}
			})
			wctx, wcancel := context.WithTimeout(ctx, time.Minute)
			defer wcancel()
			if err := d.WaitIdle(wctx); err != nil {
				b.Fatal(err)
			}
			if err := out.WaitIdle(wctx); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			b.ReportMetric(float64(proccpu.Used()-cpu0)/float64(b.N), "cpu-ns/op")
			if bc.sends && got.Load() != int64(b.N) {
				b.Fatalf("%d requests reached the sink, want %d", got.Load(), b.N)
			}
			cancel()
			<-running
			d.Close(context.Background())
			if err := out.Close(); err != nil {
				b.Fatal(err)
			}
		})
	}
}
