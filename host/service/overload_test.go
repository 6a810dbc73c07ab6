package service

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lkedge/lkedge/host/event"
	"github.com/lkedge/lkedge/host/pipeline"
	"github.com/lkedge/lkedge/host/webhook"
)

// TestOverload floods lkedge with more webhooks than it can process: it
// answers 503 with Retry-After instead of queueing without bound, the
// backlog never passes its bound, and once the flood ends every accepted
// event is processed — the senders, retrying like LiveKit's, lose nothing.
func TestOverload(t *testing.T) {
	f := newFixture(t)
	const bound, senders, perSender = 20, 8, 60
	var processed atomic.Int64
	slow := func(_ context.Context, evs []*event.Event, _ *slog.Logger) error {
		time.Sleep(2 * time.Millisecond) // a slow plugin stage
		processed.Add(int64(len(evs)))
		return nil
	}
	svc, err := New(context.Background(), f.cfg, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Sink: slow,
		Pipeline: pipeline.Options{MaxBacklog: bound, Workers: 2}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx, 0) }()
	defer func() { cancel(); <-done }()
	url := "http://" + svc.Addr().String() + "/livekit/webhook"

	var refused, accepted atomic.Int64
	var maxBacklog atomic.Int64
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stopSampling:
				return
			case <-time.After(time.Millisecond):
				if b := int64(svc.pipeline.Backlog()); b > maxBacklog.Load() {
					maxBacklog.Store(b)
				}
			}
		}
	}()
	client := &http.Client{Timeout: 5 * time.Second}
	var wg sync.WaitGroup
	for s := range senders {
		wg.Go(func() {
			for i := range perSender {
				// Distinct rooms, so that ordering does not serialize them.
				body := fmt.Appendf(nil, `{"event":"participant_joined","id":"EV_flood_%d_%d","room":{"name":"flood-%d-%d"},"participant":{"identity":"p"}}`, s, i, s, i)
				for {
					tok, _ := webhook.Sign(body, "devkey", "secret", time.Now())
					req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
					req.Header.Set("Content-Type", "application/webhook+json")
					req.Header.Set("Authorization", tok)
					res, err := client.Do(req)
					if err != nil {
						t.Error(err)
						return
					}
					res.Body.Close()
					if res.StatusCode == http.StatusOK {
						accepted.Add(1)
						break
					}
					if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" {
						t.Errorf("status %d, Retry-After %q; want 503 with Retry-After", res.StatusCode, res.Header.Get("Retry-After"))
						return
					}
					refused.Add(1)
					time.Sleep(5 * time.Millisecond) // LiveKit waits longer; the test keeps the pressure on
				}
			}
		})
	}
	wg.Wait()
	want := int64(senders * perSender)
	eventually(t, 20*time.Second, "every accepted event processed", func() bool { return processed.Load() >= want })
	close(stopSampling)
	<-sampled
	t.Logf("%d accepted, %d refused with 503, backlog peaked at %d (bound %d)", accepted.Load(), refused.Load(), maxBacklog.Load(), bound)
	if accepted.Load() != want || processed.Load() != want {
		t.Errorf("accepted %d, processed %d, want %d", accepted.Load(), processed.Load(), want)
	}
	if refused.Load() == 0 {
		t.Error("no 503 under the flood: the bound was never reached")
	}
	if maxBacklog.Load() > bound {
		t.Errorf("backlog reached %d, over its bound %d", maxBacklog.Load(), bound)
	}
	if code, body := readyz("http://" + svc.Addr().String()); code != http.StatusOK {
		t.Errorf("/readyz after the flood = %d %q", code, body)
	}
}
