package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lkedge/lkedge/host/event"
	"github.com/lkedge/lkedge/host/metrics"
	"github.com/lkedge/lkedge/host/pipeline"
)

// The tests in this file read the package-global metrics as deltas, so none
// of them calls t.Parallel.

var quiet = slog.New(slog.DiscardHandler)

type outcomes struct{ done, retried, failed float64 }

func processed(t testing.TB) outcomes {
	t.Helper()
	return outcomes{
		done:    testutil.ToFloat64(metrics.EventsProcessed.WithLabelValues("done")),
		retried: testutil.ToFloat64(metrics.EventsProcessed.WithLabelValues("retried")),
		failed:  testutil.ToFloat64(metrics.EventsProcessed.WithLabelValues("failed")),
	}
}

func (o outcomes) sub(b outcomes) outcomes {
	return outcomes{o.done - b.done, o.retried - b.retried, o.failed - b.failed}
}

// mkEvent builds an event the way ingest does, from a small protojson body.
func mkEvent(t testing.TB, id, room string) *event.Event {
	t.Helper()
	body := fmt.Sprintf(`{"event":"room_started","id":%q,"room":{"name":%q}}`, id, room)
	ev, err := event.FromWebhook([]byte(body), time.Unix(1795755700, 0))
	if err != nil {
		t.Fatalf("FromWebhook(%s): %v", body, err)
	}
	return ev
}

// fakeJournal records Done and Fail calls.
type fakeJournal struct {
	mu     sync.Mutex
	done   []uint64
	failed []failCall
	// ctxErrs holds ctx.Err() as seen by each Fail call.
	ctxErrs []error
}

type failCall struct {
	seq    uint64
	reason string
}

func (j *fakeJournal) MarkDone(seq uint64) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.done = append(j.done, seq)
}

func (j *fakeJournal) Fail(ctx context.Context, seq uint64, reason string) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.failed = append(j.failed, failCall{seq, reason})
	j.ctxErrs = append(j.ctxErrs, ctx.Err())
	return nil
}

func (j *fakeJournal) snapshot() ([]uint64, []failCall) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clone(j.done), slices.Clone(j.failed)
}

// recSink records every sink call as the list of event ids it received.
type recSink struct {
	mu    sync.Mutex
	calls [][]string
	fail  func(call int, events []*event.Event) error // optional
}

func (s *recSink) sink(_ context.Context, events []*event.Event, _ *slog.Logger) error {
	ids := make([]string, len(events))
	for i, ev := range events {
		ids[i] = ev.ID
	}
	s.mu.Lock()
	s.calls = append(s.calls, ids)
	n := len(s.calls)
	s.mu.Unlock()
	if s.fail != nil {
		return s.fail(n, events)
	}
	return nil
}

func (s *recSink) snapshot() [][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

func okStage(context.Context, *event.Event, *slog.Logger) ([]*event.Event, error) { return nil, nil }

// run starts p.Run and returns a stop function that cancels it and waits
// for Run to return; stop also runs at cleanup.
func run(t *testing.T, p *pipeline.Pipeline) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	returned := make(chan struct{})
	go func() { p.Run(ctx); close(returned) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-returned:
			case <-time.After(3 * time.Second):
				t.Error("Run did not return after its context was cancelled")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func waitIdle(t *testing.T, p *pipeline.Pipeline) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := p.WaitIdle(ctx); err != nil {
		t.Fatalf("WaitIdle: %v (backlog %d)", err, p.Backlog())
	}
}

func submit(t *testing.T, p *pipeline.Pipeline, ev *event.Event, seq uint64) {
	t.Helper()
	if err := p.Submit(ev, seq, false); err != nil {
		t.Fatalf("Submit(%s, %d): %v", ev.ID, seq, err)
	}
}

// Events of one room are processed one at a time, in submission order, even
// with several workers and with submissions racing the workers.
func TestPerKeyOrderWithManyWorkers(t *testing.T) {
	const rooms, perRoom, workers = 5, 40, 3

	var (
		mu        sync.Mutex
		stageSeen = map[string][]int{} // room -> event numbers, in stage order
		active    = map[string]int{}   // room -> stages running now
		running   int
		maxRun    int
		overlap   []string
	)
	stage := func(_ context.Context, ev *event.Event, _ *slog.Logger) ([]*event.Event, error) {
		room := ev.RoomName()
		n, err := strconv.Atoi(ev.ID[strings.LastIndexByte(ev.ID, '_')+1:])
		if err != nil {
			return nil, err
		}
		mu.Lock()
		active[room]++
		running++
		maxRun = max(maxRun, running)
		if active[room] > 1 {
			overlap = append(overlap, ev.ID)
		}
		stageSeen[room] = append(stageSeen[room], n)
		mu.Unlock()
		if n%3 == 0 {
			time.Sleep(50 * time.Microsecond) // let other rooms overtake
		}
		mu.Lock()
		active[room]--
		running--
		mu.Unlock()
		return nil, nil
	}
	var sink recSink
	var j fakeJournal
	p := pipeline.New(stage, sink.sink, &j, pipeline.Options{Workers: workers, Logger: quiet})

	seqRoom := map[uint64]string{}
	seq := uint64(0)
	submitRound := func(i int) {
		for r := range rooms {
			seq++
			room := fmt.Sprintf("room%d", r)
			seqRoom[seq] = room
			submit(t, p, mkEvent(t, fmt.Sprintf("EV_%s_%d", room, i), room), seq)
		}
	}
	// Half before the workers start, half while they run.
	for i := range perRoom / 2 {
		submitRound(i)
	}
	run(t, p)
	for i := perRoom / 2; i < perRoom; i++ {
		submitRound(i)
	}
	waitIdle(t, p)

	mu.Lock()
	defer mu.Unlock()
	if len(overlap) > 0 {
		t.Errorf("stage ran concurrently for one room at %v", overlap)
	}
	if maxRun > workers {
		t.Errorf("%d stages ran at once with %d workers", maxRun, workers)
	}
	want := make([]int, perRoom)
	for i := range want {
		want[i] = i
	}
	for r := range rooms {
		room := fmt.Sprintf("room%d", r)
		if !slices.Equal(stageSeen[room], want) {
			t.Errorf("%s: stage order %v, want %v", room, stageSeen[room], want)
		}
	}

	// The sink and the journal see each room in order too.
	sinkRoom := map[string][]string{}
	for _, call := range sink.snapshot() {
		if len(call) != 1 {
			t.Fatalf("sink call %v, want one event", call)
		}
		room := call[0][3:strings.LastIndexByte(call[0], '_')]
		sinkRoom[room] = append(sinkRoom[room], call[0])
	}
	for r := range rooms {
		room := fmt.Sprintf("room%d", r)
		if got := sinkRoom[room]; len(got) != perRoom {
			t.Errorf("%s: sink got %d events, want %d", room, len(got), perRoom)
		} else {
			for i, id := range got {
				if want := fmt.Sprintf("EV_%s_%d", room, i); id != want {
					t.Errorf("%s: sink event %d is %s, want %s", room, i, id, want)
					break
				}
			}
		}
	}
	done, failed := j.snapshot()
	if len(failed) != 0 {
		t.Errorf("Fail called: %v", failed)
	}
	if len(done) != rooms*perRoom {
		t.Fatalf("Done called %d times, want %d", len(done), rooms*perRoom)
	}
	last := map[string]uint64{}
	seen := map[uint64]bool{}
	for _, s := range done {
		if seen[s] {
			t.Errorf("Done(%d) twice", s)
		}
		seen[s] = true
		room := seqRoom[s]
		if s <= last[room] {
			t.Errorf("%s: Done(%d) after Done(%d)", room, s, last[room])
		}
		last[room] = s
	}
	if b := p.Backlog(); b != 0 {
		t.Errorf("Backlog() = %d after WaitIdle", b)
	}
}

// Two rooms are processed at the same time: each stage waits until the
// other has entered, which only works if they run concurrently.
func TestDifferentKeysRunInParallel(t *testing.T) {
	entered := make(chan string, 2)
	release := make(chan struct{})
	stage := func(ctx context.Context, ev *event.Event, _ *slog.Logger) ([]*event.Event, error) {
		entered <- ev.RoomName()
		select {
		case <-release:
			return nil, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	var sink recSink
	var j fakeJournal
	p := pipeline.New(stage, sink.sink, &j, pipeline.Options{Workers: 2, Logger: quiet})
	run(t, p)
	submit(t, p, mkEvent(t, "EV_a", "a"), 1)
	submit(t, p, mkEvent(t, "EV_b", "b"), 2)

	var got []string
	timeout := time.After(2 * time.Second)
	for len(got) < 2 {
		select {
		case room := <-entered:
			got = append(got, room)
		case <-timeout:
			t.Fatalf("only %v entered the stage: rooms are not processed in parallel", got)
		}
	}
	close(release)
	waitIdle(t, p)
	slices.Sort(got)
	if !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("entered %v, want [a b]", got)
	}
	done, _ := j.snapshot()
	slices.Sort(done)
	if !slices.Equal(done, []uint64{1, 2}) {
		t.Errorf("Done %v, want [1 2]", done)
	}
}

// Retries, giving up and panics, followed each time by another event of the
// same room to show the pipeline carries on.
func TestRetryAndFailure(t *testing.T) {
	errS3 := errors.New("s3 unavailable")
	tests := []struct {
		name        string
		maxAttempts int
		// stage behaviour for EV_1 on the given attempt (1-based).
		stage   func(attempt int) error
		sinkErr func(call int) error // for EV_1's sink calls (1-based)

		wantStage    int    // stage calls for EV_1
		wantSinkOK   int    // successful sink calls carrying EV_1
		wantDone     bool   // Done(1)
		wantFail     string // reason of Fail(1); "" = not failed
		wantOutcomes outcomes
	}{
		{
			name: "succeeds first time", maxAttempts: 3,
			stage:     func(int) error { return nil },
			wantStage: 1, wantSinkOK: 1, wantDone: true,
			wantOutcomes: outcomes{done: 1},
		},
		{
			name: "stage fails twice then succeeds", maxAttempts: 5,
			stage: func(a int) error {
				if a <= 2 {
					return errS3
				}
				return nil
			},
			wantStage: 3, wantSinkOK: 1, wantDone: true,
			wantOutcomes: outcomes{done: 1, retried: 2},
		},
		{
			name: "sink fails once then succeeds", maxAttempts: 5,
			stage: func(int) error { return nil },
			sinkErr: func(c int) error {
				if c == 1 {
					return errors.New("plugin host down")
				}
				return nil
			},
			// The stage's side effects happen once: only the sink is retried.
			wantStage: 1, wantSinkOK: 1, wantDone: true,
			wantOutcomes: outcomes{done: 1, retried: 1},
		},
		{
			name: "gives up after MaxAttempts", maxAttempts: 3,
			stage:     func(int) error { return errS3 },
			wantStage: 3, wantSinkOK: 0, wantFail: "s3 unavailable",
			wantOutcomes: outcomes{retried: 2, failed: 1},
		},
		{
			name: "a malformed body is failed at once", maxAttempts: 3,
			stage: func(int) error {
				return fmt.Errorf("%w: decode webhook: bad room", event.ErrMalformed)
			},
			wantStage: 1, wantSinkOK: 0, wantFail: "malformed webhook: decode webhook: bad room",
			wantOutcomes: outcomes{failed: 1},
		},
		{
			name: "sink always fails", maxAttempts: 2,
			stage:     func(int) error { return nil },
			sinkErr:   func(int) error { return errors.New("plugin host down") },
			wantStage: 1, wantSinkOK: 0, wantFail: "plugin host down",
			wantOutcomes: outcomes{retried: 1, failed: 1},
		},
		{
			name: "panic is recovered and retried", maxAttempts: 3,
			stage: func(a int) error {
				if a == 1 {
					panic("nil map")
				}
				return nil
			},
			wantStage: 2, wantSinkOK: 1, wantDone: true,
			wantOutcomes: outcomes{done: 1, retried: 1},
		},
		{
			name: "always panics: failed with the panic", maxAttempts: 2,
			stage:     func(int) error { panic("boom") },
			wantStage: 2, wantSinkOK: 0, wantFail: "panic: boom",
			wantOutcomes: outcomes{retried: 1, failed: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var (
				mu         sync.Mutex
				stageCalls int
				sinkCalls  int
				sinkOK     int
			)
			stage := func(_ context.Context, ev *event.Event, _ *slog.Logger) ([]*event.Event, error) {
				if ev.ID != "EV_1" {
					return nil, nil
				}
				mu.Lock()
				stageCalls++
				a := stageCalls
				mu.Unlock()
				return nil, tt.stage(a)
			}
			var others recSink
			sink := func(ctx context.Context, events []*event.Event, log *slog.Logger) error {
				if events[0].ID != "EV_1" {
					return others.sink(ctx, events, log)
				}
				mu.Lock()
				defer mu.Unlock()
				sinkCalls++
				var err error
				if tt.sinkErr != nil {
					err = tt.sinkErr(sinkCalls)
				}
				if err == nil {
					sinkOK++
				}
				return err
			}
			var j fakeJournal
			p := pipeline.New(stage, sink, &j, pipeline.Options{
				Workers: 2, MaxAttempts: tt.maxAttempts,
				Backoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond, Logger: quiet,
			})
			before := processed(t)
			run(t, p)
			submit(t, p, mkEvent(t, "EV_1", "r1"), 1)
			submit(t, p, mkEvent(t, "EV_2", "r1"), 2) // same room, after EV_1
			waitIdle(t, p)

			mu.Lock()
			if stageCalls != tt.wantStage {
				t.Errorf("stage called %d times for EV_1, want %d", stageCalls, tt.wantStage)
			}
			if sinkOK != tt.wantSinkOK {
				t.Errorf("sink accepted EV_1 %d times, want %d", sinkOK, tt.wantSinkOK)
			}
			mu.Unlock()

			done, failed := j.snapshot()
			wantDone := []uint64{2}
			if tt.wantDone {
				wantDone = []uint64{1, 2}
			}
			if !slices.Equal(done, wantDone) {
				t.Errorf("Done calls %v, want %v", done, wantDone)
			}
			var wantFailed []failCall
			if tt.wantFail != "" {
				wantFailed = []failCall{{1, tt.wantFail}}
			}
			if !slices.Equal(failed, wantFailed) {
				t.Errorf("Fail calls %+v, want %+v", failed, wantFailed)
			}
			if got := others.snapshot(); !slices.EqualFunc(got, [][]string{{"EV_2"}}, slices.Equal) {
				t.Errorf("the next event of the room reached the sink as %v, want [[EV_2]]", got)
			}
			// EV_2 adds one "done".
			want := tt.wantOutcomes
			want.done++
			if got := processed(t).sub(before); got != want {
				t.Errorf("EventsProcessed delta %+v, want %+v", got, want)
			}
		})
	}
}

// The backoff between attempts is honoured (and does not block other rooms).
func TestRetryBackoffDoesNotBlockOtherRooms(t *testing.T) {
	var mu sync.Mutex
	var attempts []time.Time
	otherDone := make(chan time.Time, 1)
	stage := func(_ context.Context, ev *event.Event, _ *slog.Logger) ([]*event.Event, error) {
		if ev.RoomName() == "other" {
			otherDone <- time.Now()
			return nil, nil
		}
		mu.Lock()
		defer mu.Unlock()
		attempts = append(attempts, time.Now())
		if len(attempts) < 3 {
			return nil, errors.New("not yet")
		}
		return nil, nil
	}
	var j fakeJournal
	var sink recSink
	p := pipeline.New(stage, sink.sink, &j, pipeline.Options{
		Workers: 2, Backoff: 40 * time.Millisecond, MaxBackoff: time.Second, Logger: quiet,
	})
	run(t, p)
	submit(t, p, mkEvent(t, "EV_slow", "slow"), 1)
	time.Sleep(5 * time.Millisecond)
	submit(t, p, mkEvent(t, "EV_other", "other"), 2)
	var otherAt time.Time
	select {
	case otherAt = <-otherDone:
	case <-time.After(2 * time.Second):
		t.Fatal("the other room was not processed")
	}
	waitIdle(t, p)
	mu.Lock()
	defer mu.Unlock()
	if len(attempts) != 3 {
		t.Fatalf("%d attempts, want 3", len(attempts))
	}
	// 40 ms then 80 ms (doubling); allow for coarse timers.
	if d := attempts[1].Sub(attempts[0]); d < 35*time.Millisecond {
		t.Errorf("first retry after %v, want >= 40ms", d)
	}
	if d := attempts[2].Sub(attempts[1]); d < 75*time.Millisecond {
		t.Errorf("second retry after %v, want >= 80ms (doubled)", d)
	}
	if !otherAt.Before(attempts[2]) {
		t.Errorf("the other room waited for the retrying one")
	}
}

func TestDerivedEventsFollowTheOriginalInOneSinkCall(t *testing.T) {
	stage := func(_ context.Context, ev *event.Event, _ *slog.Logger) ([]*event.Event, error) {
		ev.Meet = &event.Meet{Owned: true, RoomID: ev.RoomName()}
		return []*event.Event{
			ev.Derive(event.TypeRoomFinished, &event.Meet{RoomID: ev.RoomName(), Deleted: true}),
			ev.Derive("other", nil),
		}, nil
	}
	var (
		mu    sync.Mutex
		calls [][]*event.Event
	)
	sink := func(_ context.Context, events []*event.Event, _ *slog.Logger) error {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, slices.Clone(events))
		return nil
	}
	var j fakeJournal
	p := pipeline.New(stage, sink, &j, pipeline.Options{Workers: 2, Logger: quiet})
	run(t, p)
	orig := mkEvent(t, "EV_1", "r1")
	submit(t, p, orig, 7)
	waitIdle(t, p)

	mu.Lock()
	defer mu.Unlock()
	if len(calls) != 1 {
		t.Fatalf("sink called %d times, want 1", len(calls))
	}
	got := calls[0]
	var ids []string
	for _, ev := range got {
		ids = append(ids, ev.ID)
	}
	if want := []string{"EV_1", "EV_1:roomFinished", "EV_1:other"}; !slices.Equal(ids, want) {
		t.Fatalf("sink got %v, want %v", ids, want)
	}
	if got[0] != orig || got[0].Meet == nil || !got[0].Meet.Owned {
		t.Errorf("the original event (with the stage's view) is not first: %+v", got[0])
	}
	if got[1].Type != event.TypeRoomFinished || got[1].Source != event.SourceLKEdge || !got[1].Meet.Deleted {
		t.Errorf("derived event %+v", got[1])
	}
	if done, _ := j.snapshot(); !slices.Equal(done, []uint64{7}) {
		t.Errorf("Done %v, want [7] (derived events have no journal record)", done)
	}
}

func TestBacklogBound(t *testing.T) {
	var j fakeJournal
	var sink recSink
	p := pipeline.New(okStage, sink.sink, &j, pipeline.Options{MaxBacklog: 2, Workers: 2, Logger: quiet})

	if p.Full() {
		t.Fatal("Full() on an empty pipeline")
	}
	submit(t, p, mkEvent(t, "EV_1", "a"), 1)
	submit(t, p, mkEvent(t, "EV_2", "b"), 2)
	if !p.Full() {
		t.Error("Full() = false at MaxBacklog")
	}
	if err := p.Submit(mkEvent(t, "EV_3", "c"), 3, false); !errors.Is(err, pipeline.ErrFull) {
		t.Errorf("Submit at the bound = %v, want ErrFull", err)
	}
	if err := p.Submit(mkEvent(t, "EV_3", "a"), 3, false); !errors.Is(err, pipeline.ErrFull) {
		t.Errorf("Submit at the bound for a queued room = %v, want ErrFull", err)
	}
	if b := p.Backlog(); b != 2 {
		t.Errorf("Backlog() = %d after refusals, want 2", b)
	}
	// Replay forces past the bound, also for new rooms (whose hand-off then
	// overflows the ready channel).
	if err := p.Submit(mkEvent(t, "EV_3", "c"), 3, true); err != nil {
		t.Fatalf("forced Submit: %v", err)
	}
	if err := p.Submit(mkEvent(t, "EV_4", "d"), 4, true); err != nil {
		t.Fatalf("forced Submit: %v", err)
	}
	if err := p.Submit(mkEvent(t, "EV_5", "a"), 5, true); err != nil {
		t.Fatalf("forced Submit: %v", err)
	}
	if b := p.Backlog(); b != 5 {
		t.Errorf("Backlog() = %d, want 5", b)
	}
	run(t, p)
	waitIdle(t, p)
	done, _ := j.snapshot()
	slices.Sort(done)
	if !slices.Equal(done, []uint64{1, 2, 3, 4, 5}) {
		t.Errorf("Done %v, want [1 2 3 4 5]", done)
	}
	if p.Full() {
		t.Error("Full() after draining")
	}
	if err := p.Submit(mkEvent(t, "EV_6", "a"), 6, false); err != nil {
		t.Errorf("Submit after draining: %v", err)
	}
	waitIdle(t, p)
}

func TestSubmitAfterClose(t *testing.T) {
	var j fakeJournal
	var sink recSink
	p := pipeline.New(okStage, sink.sink, &j, pipeline.Options{Logger: quiet})
	p.Close()
	for _, force := range []bool{false, true} {
		if err := p.Submit(mkEvent(t, "EV_1", "a"), 1, force); !errors.Is(err, pipeline.ErrClosed) {
			t.Errorf("Submit(force=%v) after Close = %v, want ErrClosed", force, err)
		}
	}
	if b := p.Backlog(); b != 0 {
		t.Errorf("Backlog() = %d, want 0", b)
	}
}

func TestWaitIdle(t *testing.T) {
	var j fakeJournal
	var sink recSink
	p := pipeline.New(okStage, sink.sink, &j, pipeline.Options{Workers: 2, Logger: quiet})

	// Nothing queued: returns at once, even with an ended ctx.
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.WaitIdle(context.Background()); err != nil {
		t.Errorf("WaitIdle on an empty pipeline: %v", err)
	}

	submit(t, p, mkEvent(t, "EV_1", "a"), 1)
	// Not running: WaitIdle must honour its ctx.
	if err := p.WaitIdle(ended); !errors.Is(err, context.Canceled) {
		t.Errorf("WaitIdle(cancelled ctx) = %v, want context.Canceled", err)
	}
	ctx, cancel2 := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel2()
	start := time.Now()
	if err := p.WaitIdle(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitIdle with a backlog and no workers = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("WaitIdle returned %v after its deadline", d)
	}

	// Cancelled while waiting.
	ctx3, cancel3 := context.WithCancel(context.Background())
	res := make(chan error, 1)
	go func() { res <- p.WaitIdle(ctx3) }()
	time.Sleep(10 * time.Millisecond)
	cancel3()
	select {
	case err := <-res:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("WaitIdle after cancel = %v, want context.Canceled", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("WaitIdle ignored the cancellation of its ctx")
	}

	// Waiting before Run starts: returns once the event is processed.
	go func() { res <- p.WaitIdle(context.Background()) }()
	time.Sleep(10 * time.Millisecond)
	run(t, p)
	select {
	case err := <-res:
		if err != nil {
			t.Errorf("WaitIdle = %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("WaitIdle did not return once drained")
	}
	if done, _ := j.snapshot(); !slices.Equal(done, []uint64{1}) {
		t.Errorf("Done %v, want [1]", done)
	}
}

// On shutdown the event being processed finishes, queued ones are left
// alone (neither Done nor Failed: they stay pending in the journal for
// replay), and Run returns.
func TestShutdownLeavesQueuedEventsPending(t *testing.T) {
	started := make(chan struct{})
	var mu sync.Mutex
	var stageIDs []string
	stage := func(ctx context.Context, ev *event.Event, _ *slog.Logger) ([]*event.Event, error) {
		mu.Lock()
		stageIDs = append(stageIDs, ev.ID)
		mu.Unlock()
		if ev.ID == "EV_a1" {
			close(started)
			<-ctx.Done() // still busy when shutdown starts; then completes
		}
		return nil, nil
	}
	var j fakeJournal
	var sink recSink
	p := pipeline.New(stage, sink.sink, &j, pipeline.Options{Workers: 1, Logger: quiet})
	stop := run(t, p)
	submit(t, p, mkEvent(t, "EV_a1", "a"), 1)
	submit(t, p, mkEvent(t, "EV_a2", "a"), 2)
	submit(t, p, mkEvent(t, "EV_a3", "a"), 3)
	select {
	case <-started:
	case <-time.After(2 * time.Second):
		t.Fatal("first event not started")
	}
	submit(t, p, mkEvent(t, "EV_b1", "b"), 4) // waits for the only worker
	time.Sleep(50 * time.Millisecond)
	p.Close()
	if err := p.Submit(mkEvent(t, "EV_c1", "c"), 5, true); !errors.Is(err, pipeline.ErrClosed) {
		t.Errorf("Submit during shutdown = %v, want ErrClosed", err)
	}
	stop() // fails the test if Run does not return

	done, failed := j.snapshot()
	if !slices.Equal(done, []uint64{1}) {
		t.Errorf("Done %v, want only the in-flight event [1]", done)
	}
	if len(failed) != 0 {
		t.Errorf("Fail called on shutdown: %+v", failed)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(stageIDs, []string{"EV_a1"}) {
		t.Errorf("stage ran for %v, want only EV_a1", stageIDs)
	}
}

// An event whose stage is interrupted by shutdown (it returns ctx's error)
// is neither Done nor Failed, whatever attempt it was on.
func TestShutdownDuringRetryKeepsEventPending(t *testing.T) {
	var mu sync.Mutex
	calls := 0
	failing := make(chan struct{})
	stage := func(ctx context.Context, ev *event.Event, _ *slog.Logger) ([]*event.Event, error) {
		mu.Lock()
		calls++
		if calls == 2 {
			close(failing)
		}
		mu.Unlock()
		return nil, errors.New("transient")
	}
	var j fakeJournal
	var sink recSink
	p := pipeline.New(stage, sink.sink, &j, pipeline.Options{
		Workers: 1, MaxAttempts: 100, Backoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, Logger: quiet,
	})
	stop := run(t, p)
	submit(t, p, mkEvent(t, "EV_1", "a"), 1)
	select {
	case <-failing:
	case <-time.After(2 * time.Second):
		t.Fatal("not retried")
	}
	stop()
	done, failed := j.snapshot()
	if len(done) != 0 || len(failed) != 0 {
		t.Errorf("after shutdown mid-retry: Done %v, Fail %+v; want neither", done, failed)
	}
}

// An in-flight event that finishes after Run's ctx was cancelled (the drain
// timeout expired) must still be marked done: the journal refuses requests
// whose ctx has ended, and the event would be processed twice otherwise.
func TestDoneAfterShutdown(t *testing.T) {
	started := make(chan struct{})
	stage := func(ctx context.Context, ev *event.Event, _ *slog.Logger) ([]*event.Event, error) {
		close(started)
		<-ctx.Done()
		return nil, nil // the work completed regardless
	}
	var j fakeJournal
	var sink recSink
	p := pipeline.New(stage, sink.sink, &j, pipeline.Options{Workers: 1, Logger: quiet})
	stop := run(t, p)
	submit(t, p, mkEvent(t, "EV_1", "a"), 1)
	<-started
	stop()
	if done, _ := j.snapshot(); len(done) != 1 {
		t.Errorf("an event finished during shutdown was not marked done (%v): it would be processed twice", done)
	}
}
