package deliver

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lkedge/lkedge/host/internal/proccpu"
)

// benchOutbox is a running outbox and a local sink that counts what
// reaches it.
type benchOutbox struct {
	o    *Outbox
	sink *httptest.Server
	got  atomic.Int64
	body []byte
}

func newBenchOutbox(b *testing.B) *benchOutbox {
	bo := &benchOutbox{body: make([]byte, 1024)}
	bo.sink = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		bo.got.Add(1)
	}))
	b.Cleanup(bo.sink.Close)
	o, err := Open(filepath.Join(b.TempDir(), "outbox.db"), Options{Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	bo.o = o
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { o.Run(ctx); close(done) }()
	b.Cleanup(func() {
		cancel()
		<-done
		if err := o.Close(); err != nil {
			b.Error(err)
		}
	})
	return bo
}

// enqueue stores delivery n of a 1 KiB request to the sink.
func (bo *benchOutbox) enqueue(b *testing.B, n int64) {
	d := Delivery{
		ID: fmt.Sprintf("e%d/plug/0", n), Plugin: "plug", EventID: fmt.Sprintf("e%d", n),
		Resource: fmt.Sprintf("room-%d", n%64), URL: bo.sink.URL + "/hook", Body: bo.body,
		IdempotencyKey: fmt.Sprintf("e%d", n),
		Policy:         Policy{Attempts: 3, Backoff: time.Millisecond, Timeout: 5 * time.Second, Allow: []string{bo.sink.URL}},
	}
	if err := bo.o.Enqueue(context.Background(), []Delivery{d}); err != nil {
		b.Error(err)
	}
}

// finish waits until every delivery reached the sink and reports the CPU
// used since cpu0 per delivery.
func (bo *benchOutbox) finish(b *testing.B, cpu0 time.Duration, n int64) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := bo.o.WaitIdle(ctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(proccpu.Used()-cpu0)/float64(b.N), "cpu-ns/op")
	if got := bo.got.Load(); got != n {
		b.Fatalf("%d delivered, %d enqueued", got, n)
	}
}

// BenchmarkDeliverRate enqueues one delivery per event at a fixed rate, as
// the plugin stage does under an open loop of webhooks, and reports the
// process's CPU per delivery (the sink's included).
func BenchmarkDeliverRate(b *testing.B) {
	for _, rate := range []int{1000, 2000} {
		b.Run(fmt.Sprintf("%d/s", rate), func(b *testing.B) {
			bo := newBenchOutbox(b)
			interval := time.Second / time.Duration(rate)
			var wg sync.WaitGroup
			cpu0 := proccpu.Used()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
				wg.Go(func() { bo.enqueue(b, int64(i)) })
			}
			wg.Wait()
			bo.finish(b, cpu0, int64(b.N))
		})
	}
}

// BenchmarkDeliver enqueues one delivery per event from 8 goroutines, as
// the plugin stage does, and counts until every one reached a local sink:
// the outbox's whole cost per delivery (enqueue commit, send, recording the
// success). cpu-ns/op is the process's CPU per delivery, the sink's
// included.
func BenchmarkDeliver(b *testing.B) {
	bo := newBenchOutbox(b)
	var next atomic.Int64
	cpu0 := proccpu.Used()
	b.SetParallelism(4) // 8 goroutines on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			bo.enqueue(b, next.Add(1))
		}
	})
	bo.finish(b, cpu0, next.Load())
}

// BenchmarkPendingMemory reports the Go heap that each pending delivery
// holds while it waits, as behind a dead destination on Standard Webhooks'
// day-long schedule: deliveries of a 1.2 KB body, stored and never sent.
func BenchmarkPendingMemory(b *testing.B) {
	o, err := Open(filepath.Join(b.TempDir(), "outbox.db"), Options{Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	defer o.Close()
	body := make([]byte, 1200)
	policy := Policy{
		Schedule: []time.Duration{5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour},
		Allow:    []string{"http://127.0.0.1:1"},
	}
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	before := ms.HeapAlloc
	batch := make([]Delivery, 0, 100)
	for i := range b.N {
		batch = append(batch, Delivery{
			ID: fmt.Sprintf("EV_%d/standard-webhooks/0", i), Plugin: "standard-webhooks", EventID: fmt.Sprintf("EV_%d", i),
			Resource: "room:r", URL: "http://127.0.0.1:1/standard", Header: [][2]string{{"Content-Type", "application/json"}},
			Body: body, IdempotencyKey: fmt.Sprintf("msg_%d", i), Sign: &Sign{Scheme: SchemeStandardWebhooks, Secret: "s"}, Policy: policy,
		})
		if len(batch) == cap(batch) || i == b.N-1 {
			if err := o.Enqueue(context.Background(), batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	if o.Pending() != b.N {
		b.Fatalf("%d pending, want %d", o.Pending(), b.N)
	}
	b.ReportMetric(float64(int64(ms.HeapAlloc)-int64(before))/float64(b.N), "heap-B/pending")
}
