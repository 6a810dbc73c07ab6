package service

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lkedge/lkedge/host/event"
	"github.com/lkedge/lkedge/host/metrics"
	"github.com/lkedge/lkedge/host/pipeline"
	"github.com/lkedge/lkedge/host/webhook"
)

// TestOverload floods lkedge with more webhooks than it can process: it
// answers 503 with Retry-After instead of queueing without bound, the
// backlog never passes its bound, and once the flood ends every accepted
// event is processed once, in its room's order, as its webhook said — the
// senders, retrying like LiveKit's, lose nothing. It runs with the whole
// backlog in memory, and with all but 4 of the waiting events read back
// from the journal.
func TestOverload(t *testing.T) {
	for _, inMemory := range []int{20, 4} {
		t.Run(fmt.Sprintf("%d in memory", inMemory), func(t *testing.T) { overload(t, inMemory) })
	}
}

func overload(t *testing.T, inMemory int) {
	f := newFixture(t)
	const bound, senders, perSender = 20, 8, 60
	var (
		processed atomic.Int64
		mu        sync.Mutex
		seen      = map[string]int{}
		order     = map[string][]int{} // room -> event numbers, as processed
		wrong     []string
	)
	slow := func(_ context.Context, evs []*event.Event, _ *slog.Logger) error {
		time.Sleep(2 * time.Millisecond) // a slow plugin stage
		mu.Lock()
		for _, ev := range evs {
			seen[ev.ID]++
			msg, err := ev.LiveKit()
			var s, i int
			_, serr := fmt.Sscanf(ev.ID, "EV_flood_%d_%d", &s, &i)
			room := msg.GetRoom().GetName()
			if err != nil || serr != nil || msg.GetParticipant().GetIdentity() != "p" || room != fmt.Sprintf("flood-%d", s) {
				wrong = append(wrong, ev.ID)
			}
			order[room] = append(order[room], i)
		}
		mu.Unlock()
		processed.Add(int64(len(evs)))
		return nil
	}
	readBack := testutil.ToFloat64(metrics.BacklogReadBack)
	svc, err := New(context.Background(), f.cfg, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Sink: slow,
		Pipeline: pipeline.Options{MaxBacklog: bound, Workers: 2, InMemory: inMemory}})
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
				// A room per sender: the rooms go in parallel, and each
				// room's events wait behind one another.
				body := fmt.Appendf(nil, `{"event":"participant_joined","id":"EV_flood_%d_%d","room":{"name":"flood-%d"},"participant":{"identity":"p"}}`, s, i, s)
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
	mu.Lock()
	for id, n := range seen {
		if n != 1 {
			t.Errorf("%s processed %d times", id, n)
		}
	}
	if len(wrong) > 0 {
		t.Errorf("events not as their webhook said: %v", wrong)
	}
	// With fewer kept than the bound, the rooms' waiting events must have
	// gone through the journal, or this run proves nothing the other does not.
	if n := testutil.ToFloat64(metrics.BacklogReadBack) - readBack; inMemory < bound && n == 0 {
		t.Errorf("no event read back from the journal with %d of up to %d kept in memory", inMemory, bound)
	} else {
		t.Logf("%g events read back from the journal", n)
	}
	for room, got := range order {
		if !slices.IsSorted(got) {
			t.Errorf("%s processed out of order: %v", room, got)
		}
	}
	mu.Unlock()
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
