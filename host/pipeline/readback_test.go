package pipeline_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lkedge/lkedge/host/event"
	"github.com/lkedge/lkedge/host/pipeline"
)

// TestBacklogReadBack: admitted events past InMemory keep only their place
// and are read back when their turn comes; they are processed as the
// others are, in order per room, and one that cannot be read back is
// failed in its turn without holding its room's later events.
func TestBacklogReadBack(t *testing.T) {
	const rooms, perRoom, inMemory = 4, 10, 3
	body := func(room string, i int) string {
		return fmt.Sprintf(`{"event":"room_started","id":"EV_%s_%d","room":{"name":%q,"metadata":"m%d"}}`, room, i, room, i)
	}
	for _, tc := range []struct {
		name   string
		reload bool
		// broken gives the seq whose read back fails, and how.
		broken     uint64
		breakRead  func(seq uint64) (*event.Event, error)
		wantFailed string
	}{
		{name: "in memory without Reload"},
		{name: "read back", reload: true},
		{name: "a record that cannot be read", reload: true, broken: 22,
			breakRead:  func(uint64) (*event.Event, error) { return nil, errors.New("input/output error") },
			wantFailed: "read the event back from the journal: input/output error"},
		{name: "another event at the seq", reload: true, broken: 23,
			breakRead: func(uint64) (*event.Event, error) {
				return event.FromWebhook([]byte(`{"event":"room_started","id":"EV_other"}`), time.Now())
			},
			wantFailed: "read the event back from the journal: journal seq 23 holds event EV_other"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bodies, ids := map[uint64]string{}, map[uint64]string{}
			var (
				mu       sync.Mutex
				reloaded []uint64
				seen     = map[string][]string{} // room -> ids, in stage order
				bad      []string
			)
			opts := pipeline.Options{Workers: 1, InMemory: inMemory, Logger: quiet}
			if tc.reload {
				opts.Reload = func(seq uint64) (*event.Event, error) {
					mu.Lock()
					reloaded = append(reloaded, seq)
					mu.Unlock()
					if seq == tc.broken {
						return tc.breakRead(seq)
					}
					return event.FromWebhook([]byte(bodies[seq]), time.Unix(1795755700, 0))
				}
			}
			stage := func(_ context.Context, ev *event.Event, _ *slog.Logger) ([]*event.Event, error) {
				// What a read-back event carries is what the webhook said.
				msg, err := ev.LiveKit()
				mu.Lock()
				defer mu.Unlock()
				md, _ := ev.RoomMetadata()
				if err != nil || msg.GetRoom().GetName() != ev.RoomName() || md != msg.GetRoom().GetMetadata() || !strings.HasPrefix(md, "m") {
					bad = append(bad, ev.ID)
				}
				seen[ev.RoomName()] = append(seen[ev.RoomName()], ev.ID)
				return nil, nil
			}
			var sink recSink
			var j fakeJournal
			p := pipeline.New(stage, sink.sink, &j, opts)
			// Accepted and admitted before the pipeline runs: all but
			// inMemory wait without their event.
			seq := uint64(0)
			for i := range perRoom {
				for r := range rooms {
					seq++
					room := fmt.Sprintf("room%d", r)
					bodies[seq] = body(room, i)
					ev, err := event.FromWebhook([]byte(bodies[seq]), time.Unix(1795755700, 0))
					if err != nil {
						t.Fatal(err)
					}
					ids[seq] = ev.ID
					if err := p.Accept(context.Background(), ev, seq); err != nil {
						t.Fatalf("Accept(%s): %v", ev.ID, err)
					}
				}
			}
			run(t, p)
			waitIdle(t, p)

			mu.Lock()
			defer mu.Unlock()
			wantReloads := 0
			if tc.reload {
				wantReloads = rooms*perRoom - inMemory
			}
			if len(reloaded) != wantReloads {
				t.Errorf("%d events read back, want %d", len(reloaded), wantReloads)
			}
			if len(bad) > 0 {
				t.Errorf("events not as their webhook said: %v", bad)
			}
			brokenID := ids[tc.broken]
			for r := range rooms {
				room := fmt.Sprintf("room%d", r)
				var want []string
				for i := range perRoom {
					if id := fmt.Sprintf("EV_%s_%d", room, i); id != brokenID {
						want = append(want, id)
					}
				}
				if !slices.Equal(seen[room], want) {
					t.Errorf("%s: stage saw %v, want %v", room, seen[room], want)
				}
			}
			done, failed := j.snapshot()
			var wantFailed []failCall
			if tc.broken != 0 {
				wantFailed = []failCall{{tc.broken, tc.wantFailed}}
			}
			if !slices.Equal(failed, wantFailed) {
				t.Errorf("failed %v, want %v", failed, wantFailed)
			}
			if len(done)+len(failed) != rooms*perRoom {
				t.Errorf("%d done and %d failed of %d", len(done), len(failed), rooms*perRoom)
			}
		})
	}
}

// BenchmarkBacklogMemory is the heap a full backlog holds per event: 10 000
// egress_updated webhooks accepted and admitted, waiting, with every event
// in memory and with the default InMemory and a Reload.
func BenchmarkBacklogMemory(b *testing.B) {
	const n = 10_000
	body, err := os.ReadFile("../../testdata/events/egress_updated.webhook.json")
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		reload bool
	}{{"all in memory", false}, {"read back past InMemory", true}} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				opts := pipeline.Options{MaxBacklog: n, Logger: quiet}
				if tc.reload {
					opts.Reload = func(uint64) (*event.Event, error) { return nil, errors.New("not read in this benchmark") }
				}
				p := pipeline.New(okStage, (&recSink{}).sink, &fakeJournal{}, opts)
				for i := range n {
					// Distinct ids and a room per ten events, as a busy
					// server's would be.
					b := bytes.Replace(body, []byte(`"id":"`), fmt.Appendf(nil, `"id":"%06d`, i), 1)
					b = bytes.ReplaceAll(b, []byte(`"roomName":"`), fmt.Appendf(nil, `"roomName":"r%d-`, i/10))
					ev, err := event.FromWebhook(b, time.Now())
					if err != nil {
						panic(err)
					}
					if err := p.Accept(context.Background(), ev, uint64(i+1)); err != nil {
						panic(err)
					}
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				runtime.KeepAlive(p)
				b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "heap-B/event")
			}
		})
	}
}

// BenchmarkPipeline is the pipeline's own cost per event: accepted,
// admitted, taken in its turn by a worker and marked done, with a stage and
// a sink that do nothing, 100 rooms at a time.
func BenchmarkPipeline(b *testing.B) {
	body, err := os.ReadFile("../../testdata/events/egress_updated.webhook.json")
	if err != nil {
		b.Fatal(err)
	}
	events := make([]*event.Event, 1000)
	for i := range events {
		ev, err := event.FromWebhook(bytes.ReplaceAll(body, []byte(`"roomName":"`), fmt.Appendf(nil, `"roomName":"r%d-`, i%100)), time.Now())
		if err != nil {
			b.Fatal(err)
		}
		events[i] = ev
	}
	p := pipeline.New(okStage, func(context.Context, []*event.Event, *slog.Logger) error { return nil }, &fakeJournal{},
		pipeline.Options{MaxBacklog: len(events), Logger: quiet})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.Run(ctx)
	seq := uint64(0)
	for b.Loop() {
		seq++
		// An id of its own each time, as the coordinator de-duplicates.
		ev := *events[seq%uint64(len(events))]
		ev.ID = strconv.FormatUint(seq, 10)
		if err := p.Accept(ctx, &ev, seq); err != nil {
			b.Fatal(err)
		}
		if seq%uint64(len(events)) == 0 {
			if err := p.WaitIdle(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := p.WaitIdle(ctx); err != nil {
		b.Fatal(err)
	}
}
