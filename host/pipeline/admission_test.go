package pipeline_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lkedge/lkedge/host/coord"
	"github.com/lkedge/lkedge/host/event"
	"github.com/lkedge/lkedge/host/metrics"
	"github.com/lkedge/lkedge/host/pipeline"
)

// fakeSequencer admits and grants turns as told: admitFails admissions and
// turnFails turns fail first (a coordinator outage), dup names events
// another replica admitted, turnHook (optional) decides each turn.
type fakeSequencer struct {
	mu         sync.Mutex
	admitFails int
	turnFails  int
	dup        map[string]bool
	owners     []string
	admitted   []string
	turns      int
	next       uint64
	turnHook   func(n int, key string) (coord.Turn, error)
}

var errUnreachable = errors.New("consul: connection refused")

func (s *fakeSequencer) Admit(_ context.Context, eventID, _, owner string) (coord.Ticket, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.owners = append(s.owners, owner)
	if s.admitFails > 0 {
		s.admitFails--
		return coord.Ticket{}, errUnreachable
	}
	if s.dup[eventID] {
		return coord.Ticket{}, coord.ErrDuplicate
	}
	s.admitted = append(s.admitted, eventID)
	s.next++
	return coord.Ticket{Epoch: 1, N: s.next}, nil
}

func (s *fakeSequencer) Turn(ctx context.Context, key string, _ coord.Ticket) (coord.Turn, error) {
	s.mu.Lock()
	s.turns++
	n, hook := s.turns, s.turnHook
	if s.turnFails > 0 {
		s.turnFails--
		s.mu.Unlock()
		return nil, errUnreachable
	}
	s.mu.Unlock()
	if hook != nil {
		return hook(n, key)
	}
	return fakeTurn{ctx: context.Background()}, nil
}

func (s *fakeSequencer) snapshot() (owners, admitted []string, turns int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.owners), slices.Clone(s.admitted), s.turns
}

type fakeTurn struct {
	ctx  context.Context
	late bool
}

func (t fakeTurn) Context() context.Context   { return t.ctx }
func (t fakeTurn) Late() bool                 { return t.late }
func (t fakeTurn) Done(context.Context) error { return nil }

// TestCoordinatorOutageDoesNotUseAttempts: turns that fail for longer than
// the event's attempts allow still end with the event done, not failed.
func TestCoordinatorOutageDoesNotUseAttempts(t *testing.T) {
	j := &fakeJournal{}
	seq := &fakeSequencer{turnFails: 5}
	p := pipeline.New(okStage, (&recSink{}).sink, j, pipeline.Options{
		MaxAttempts: 1, Backoff: time.Millisecond, Sequencer: seq, Replica: "r1", Logger: quiet,
	})
	run(t, p)
	submit(t, p, mkEvent(t, "EV_1", "r"), 7)
	waitIdle(t, p)
	done, failed := j.snapshot()
	if len(done) != 1 || len(failed) != 0 {
		t.Fatalf("Done %v, Fail %v; want the event done after the outage", done, failed)
	}
	if owners, _, _ := seq.snapshot(); owners[0] != "r1/7" {
		t.Errorf("admission owner %q, want replica/seq r1/7", owners[0])
	}
}

// TestDuplicateAdmissionIsDoneNotProcessed: an event another replica
// admitted is marked done here without running the stage or the sink.
func TestDuplicateAdmissionIsDoneNotProcessed(t *testing.T) {
	j := &fakeJournal{}
	sink := &recSink{}
	p := pipeline.New(okStage, sink.sink, j, pipeline.Options{Sequencer: &fakeSequencer{dup: map[string]bool{"EV_dup": true}}, Logger: quiet})
	run(t, p)
	if err := p.Accept(context.Background(), mkEvent(t, "EV_dup", "r"), 1); err != nil {
		t.Fatalf("Accept of another replica's event = %v, want nil (answered 200)", err)
	}
	waitIdle(t, p)
	if done, _ := j.snapshot(); !slices.Equal(done, []uint64{1}) {
		t.Errorf("Done %v, want [1]", done)
	}
	if got := sink.snapshot(); len(got) != 0 {
		t.Errorf("sink got %v for a duplicate", got)
	}
}

// TestAcceptWhileUnreachable: while admissions fail, Accept reports it (the
// webhook gets 503); the event, already recorded, is admitted in the
// background and processed once; the sender's retry (Readmit) then
// succeeds without a second record, and earlier events of the room are
// admitted before later ones.
func TestAcceptWhileUnreachable(t *testing.T) {
	j := &fakeJournal{}
	sink := &recSink{}
	seq := &fakeSequencer{admitFails: 2}
	p := pipeline.New(okStage, sink.sink, j, pipeline.Options{Backoff: time.Hour, Sequencer: seq, Logger: quiet})
	ctx := context.Background()
	if err := p.Accept(ctx, mkEvent(t, "EV_a1", "room-a"), 1); !errors.Is(err, errUnreachable) {
		t.Fatalf("Accept while unreachable = %v, want the coordinator's error", err)
	}
	if err := p.Readmit(ctx, "EV_a1"); !errors.Is(err, errUnreachable) {
		t.Fatalf("Readmit while unreachable = %v, want the coordinator's error", err)
	}
	// Reachable again: the room's next event is admitted after the first.
	if err := p.Accept(ctx, mkEvent(t, "EV_a2", "room-a"), 2); err != nil {
		t.Fatalf("Accept once reachable: %v", err)
	}
	if err := p.Readmit(ctx, "EV_a1"); err != nil {
		t.Fatalf("Readmit of an admitted event: %v", err)
	}
	run(t, p)
	waitIdle(t, p)
	if _, admitted, _ := seq.snapshot(); !slices.Equal(admitted, []string{"EV_a1", "EV_a2"}) {
		t.Errorf("admitted %v, want the room's events in journal order", admitted)
	}
	if got := sink.snapshot(); !slices.EqualFunc(got, [][]string{{"EV_a1"}, {"EV_a2"}}, slices.Equal) {
		t.Errorf("sink calls %v, want each event once, in order", got)
	}
}

// TestBackgroundAdmission: an event recorded while the coordinator was
// unreachable, and never sent again, is admitted by the background loop
// once the coordinator is back.
func TestBackgroundAdmission(t *testing.T) {
	j := &fakeJournal{}
	seq := &fakeSequencer{admitFails: 3}
	p := pipeline.New(okStage, (&recSink{}).sink, j, pipeline.Options{Backoff: time.Millisecond, Sequencer: seq, Logger: quiet})
	run(t, p)
	if err := p.Accept(context.Background(), mkEvent(t, "EV_b", "room-b"), 4); err == nil {
		t.Fatal("Accept while unreachable succeeded")
	}
	waitIdle(t, p)
	if done, _ := j.snapshot(); !slices.Equal(done, []uint64{4}) {
		t.Errorf("Done %v, want [4]", done)
	}
}

// TestSideEffectsOnce: a sink failure retries the sink alone; the stage's
// side effects (data messages, the lock release) happen once.
func TestSideEffectsOnce(t *testing.T) {
	j := &fakeJournal{}
	var stages atomic.Int32
	stage := func(context.Context, *event.Event, *slog.Logger) ([]*event.Event, error) {
		stages.Add(1)
		return nil, nil
	}
	sink := &recSink{fail: func(call int, _ []*event.Event) error {
		if call <= 2 {
			return errors.New("outbox: disk full")
		}
		return nil
	}}
	p := pipeline.New(stage, sink.sink, j, pipeline.Options{Backoff: time.Millisecond, Logger: quiet})
	run(t, p)
	submit(t, p, mkEvent(t, "EV_once", "r"), 1)
	waitIdle(t, p)
	if n := stages.Load(); n != 1 {
		t.Errorf("stage ran %d times, want 1", n)
	}
	if n := len(sink.snapshot()); n != 3 {
		t.Errorf("sink ran %d times, want 3", n)
	}
}

// TestFencedEventTakesItsTurnAgain: the replica loses its coordination
// session while the stage runs; the work stops at once, and the event is
// processed under a new turn (here: late), exactly once to the end.
func TestFencedEventTakesItsTurnAgain(t *testing.T) {
	j := &fakeJournal{}
	fence, lose := context.WithCancel(context.Background())
	seq := &fakeSequencer{turnHook: func(n int, _ string) (coord.Turn, error) {
		if n == 1 {
			return fakeTurn{ctx: fence}, nil
		}
		return fakeTurn{ctx: context.Background(), late: true}, nil
	}}
	var stages atomic.Int32
	stage := func(ctx context.Context, _ *event.Event, _ *slog.Logger) ([]*event.Event, error) {
		if stages.Add(1) == 1 {
			lose()
			<-ctx.Done() // the work sees the fence
			return nil, ctx.Err()
		}
		return nil, nil
	}
	sink := &recSink{}
	p := pipeline.New(stage, sink.sink, j, pipeline.Options{Sequencer: seq, Logger: quiet})
	run(t, p)
	submit(t, p, mkEvent(t, "EV_f", "r"), 1)
	waitIdle(t, p)
	if _, _, turns := seq.snapshot(); turns != 2 {
		t.Errorf("turns %d, want 2 (one fenced, one late)", turns)
	}
	if done, failed := j.snapshot(); !slices.Equal(done, []uint64{1}) || len(failed) != 0 {
		t.Errorf("Done %v, Fail %v; want done once", done, failed)
	}
	if got := sink.snapshot(); len(got) != 1 {
		t.Errorf("sink calls %v, want 1", got)
	}
}

// TestWaitingForATurnHoldsNoWorker: with one worker, a room waiting for its
// turn (on another replica's event) does not stop another room.
func TestWaitingForATurnHoldsNoWorker(t *testing.T) {
	j := &fakeJournal{}
	release := make(chan struct{})
	seq := &fakeSequencer{turnHook: func(_ int, key string) (coord.Turn, error) {
		if key == "room:blocked" {
			<-release
		}
		return fakeTurn{ctx: context.Background()}, nil
	}}
	sink := &recSink{}
	p := pipeline.New(okStage, sink.sink, j, pipeline.Options{Workers: 1, Sequencer: seq, Logger: quiet})
	run(t, p)
	submit(t, p, mkEvent(t, "EV_w1", "blocked"), 1)
	submit(t, p, mkEvent(t, "EV_w2", "free"), 2)
	deadline := time.Now().Add(3 * time.Second)
	for len(sink.snapshot()) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := sink.snapshot(); !slices.EqualFunc(got, [][]string{{"EV_w2"}}, slices.Equal) {
		t.Fatalf("sink calls %v while room blocked waits, want the free room's event", got)
	}
	close(release)
	waitIdle(t, p)
}

// countingSequencer counts the admissions it is asked for.
type countingSequencer struct {
	pipeline.Sequencer
	mu     sync.Mutex
	admits []string
}

func (s *countingSequencer) Admit(ctx context.Context, eventID, orderKey, owner string) (coord.Ticket, error) {
	s.mu.Lock()
	s.admits = append(s.admits, eventID)
	s.mu.Unlock()
	return s.Sequencer.Admit(ctx, eventID, orderKey, owner)
}

// An event Options.Idle says needs nothing is finished by Accept itself:
// marked done, counted as skipped, never admitted, never seen by the stage
// or the sink; the others of the same room go the whole way, in order.
func TestIdleEventsFinishWhenAccepted(t *testing.T) {
	seqr := &countingSequencer{Sequencer: coord.NewInProcess(nil)}
	j := &fakeJournal{}
	var staged []string
	var mu sync.Mutex
	stage := func(_ context.Context, ev *event.Event, _ *slog.Logger) ([]*event.Event, error) {
		mu.Lock()
		staged = append(staged, ev.ID)
		mu.Unlock()
		return nil, nil
	}
	s := &recSink{}
	p := pipeline.New(stage, s.sink, j, pipeline.Options{
		Sequencer: seqr, Logger: quiet,
		Idle: func(ev *event.Event) bool { return strings.HasPrefix(ev.ID, "idle-") },
	})
	run(t, p)
	skipped0 := testutil.ToFloat64(metrics.EventsProcessed.WithLabelValues("skipped"))
	for i, id := range []string{"busy-1", "idle-1", "busy-2", "idle-2", "idle-3", "busy-3"} {
		if err := p.Accept(context.Background(), mkEvent(t, id, "room-of-all"), uint64(i+1)); err != nil {
			t.Fatalf("Accept(%s): %v", id, err)
		}
	}
	waitIdle(t, p)
	done, failed := j.snapshot()
	slices.Sort(done)
	if want := []uint64{1, 2, 3, 4, 5, 6}; !slices.Equal(done, want) || len(failed) != 0 {
		t.Errorf("journal: done %v, failed %v; want done %v", done, failed, want)
	}
	want := []string{"busy-1", "busy-2", "busy-3"}
	mu.Lock()
	gotStaged := slices.Clone(staged)
	mu.Unlock()
	seqr.mu.Lock()
	admits := slices.Clone(seqr.admits)
	seqr.mu.Unlock()
	var sunk []string
	for _, c := range s.snapshot() {
		sunk = append(sunk, c...)
	}
	for name, got := range map[string][]string{"admitted": admits, "staged": gotStaged, "sunk": sunk} {
		if !slices.Equal(got, want) {
			t.Errorf("%s %v, want %v", name, got, want)
		}
	}
	if got := testutil.ToFloat64(metrics.EventsProcessed.WithLabelValues("skipped")) - skipped0; got != 3 {
		t.Errorf("skipped counted %v times, want 3", got)
	}
}

// silentSequencer is a coordinator that never answers an admission: each
// Admit waits until its context ends.
type silentSequencer struct{ pipeline.Sequencer }

func (silentSequencer) Admit(ctx context.Context, _, _, _ string) (coord.Ticket, error) {
	<-ctx.Done()
	return coord.Ticket{}, ctx.Err()
}

// TestAdmitTimeout: Accept and Readmit give up on a coordinator that does
// not answer after Options.AdmitTimeout, though their caller's context has
// no deadline (ingest passes none), so the webhook is refused rather than
// left hanging.
func TestAdmitTimeout(t *testing.T) {
	const bound = 80 * time.Millisecond
	p := pipeline.New(okStage, (&recSink{}).sink, &fakeJournal{}, pipeline.Options{
		Sequencer: silentSequencer{coord.NewInProcess(nil)}, AdmitTimeout: bound, Backoff: time.Hour, Logger: quiet,
	})
	for _, tc := range []struct {
		name  string
		admit func() error
	}{
		{"Accept", func() error { return p.Accept(context.Background(), mkEvent(t, "EV_silent1", "room-s"), 1) }},
		{"Readmit", func() error { return p.Readmit(context.Background(), "EV_silent1") }},
	} {
		start := time.Now()
		err := tc.admit()
		took := time.Since(start)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s = %v, want the admission's deadline exceeded", tc.name, err)
		}
		if took < bound || took > bound+2*time.Second {
			t.Errorf("%s gave up after %v, want about %v", tc.name, took, bound)
		}
	}
}
