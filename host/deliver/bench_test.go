package deliver

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// processCPU is this process's user + system time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkDeliverRate enqueues one delivery per event at a fixed rate, as
// the plugin stage does under an open loop of webhooks, and reports the
// process's CPU per delivery (the sink's included).
func BenchmarkDeliverRate(b *testing.B) {
	for _, rate := range []int{1000, 2000} {
		b.Run(fmt.Sprintf("%d/s", rate), func(b *testing.B) {
			var got atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				got.Add(1)
			}))
			defer srv.Close()
			o, err := Open(filepath.Join(b.TempDir(), "outbox.db"), Options{Logger: quietLogger()})
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { o.Run(ctx); close(done) }()
			body := make([]byte, 1024)
			interval := time.Second / time.Duration(rate)
			var wg sync.WaitGroup
			cpu0 := processCPU()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
				wg.Go(func() {
					d := Delivery{
						ID: fmt.Sprintf("e%d/plug/0", i), Plugin: "plug", EventID: fmt.Sprintf("e%d", i),
						Resource: fmt.Sprintf("room-%d", i%64), URL: srv.URL + "/hook", Body: body,
						IdempotencyKey: fmt.Sprintf("e%d", i),
						Policy:         Policy{Attempts: 3, Backoff: time.Millisecond, Timeout: 5 * time.Second, Allow: []string{srv.URL}},
					}
					if err := o.Enqueue(context.Background(), []Delivery{d}); err != nil {
						b.Error(err)
					}
				})
			}
			wg.Wait()
			wctx, wcancel := context.WithTimeout(context.Background(), time.Minute)
			defer wcancel()
			if err := o.WaitIdle(wctx); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
			cancel()
			<-done
			if err := o.Close(); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkDeliver enqueues one delivery per event from 8 goroutines, as the
// plugin stage does, and counts until every one reached a local sink: the
// outbox's whole cost per delivery (enqueue commit, send, recording the
// success). cpu-ns/op is the process's CPU per delivery, the sink's
// included.
func BenchmarkDeliver(b *testing.B) {
	var got atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		got.Add(1)
	}))
	defer srv.Close()
	o, err := Open(filepath.Join(b.TempDir(), "outbox.db"), Options{Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { o.Run(ctx); close(done) }()
	body := make([]byte, 1024)
	var next atomic.Int64
	cpu0 := processCPU()
	b.SetParallelism(4) // 8 goroutines on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n := next.Add(1)
			d := Delivery{
				ID: fmt.Sprintf("e%d/plug/0", n), Plugin: "plug", EventID: fmt.Sprintf("e%d", n),
				Resource: fmt.Sprintf("room-%d", n%64), URL: srv.URL + "/hook", Body: body,
				IdempotencyKey: fmt.Sprintf("e%d", n),
				Policy:         Policy{Attempts: 3, Backoff: time.Millisecond, Timeout: 5 * time.Second, Allow: []string{srv.URL}},
			}
			if err := o.Enqueue(context.Background(), []Delivery{d}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	wctx, wcancel := context.WithTimeout(context.Background(), time.Minute)
	defer wcancel()
	if err := o.WaitIdle(wctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
	cancel()
	<-done
	if err := o.Close(); err != nil {
		b.Fatal(err)
	}
	if got.Load() != next.Load() {
		b.Fatalf("%d delivered, %d enqueued", got.Load(), next.Load())
	}
}
