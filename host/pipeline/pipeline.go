// Package pipeline processes accepted events: one at a time and in order per
// room (or per resource), in parallel across rooms, with retries, and marks
// each done or failed in the journal it was recorded in.
//
// Order across replicas comes from the coordinator: an event is admitted
// (de-duplicated and given its room's next ticket) before its webhook is
// answered, and processed only in its turn, once every earlier ticket of the
// room is done on whichever replica holds it.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/lkedge/lkedge/host/coord"
	"github.com/lkedge/lkedge/host/event"
	"github.com/lkedge/lkedge/host/internal/reuse"
	"github.com/lkedge/lkedge/host/metrics"
)

// Stage is the native logic run on each event (the Meet handler). It may
// attach its view to ev and returns the events it derives. An error asks for
// the event to be tried again.
type Stage func(ctx context.Context, ev *event.Event, log *slog.Logger) ([]*event.Event, error)

// Sink receives each processed event followed by the events derived from
// it: the hand-off to the plugin stage.
type Sink func(ctx context.Context, events []*event.Event, log *slog.Logger) error

// Journal is where accepted events are recorded; the pipeline tells it when
// one is finished (without waiting: a lost mark means a replay) or given up.
type Journal interface {
	MarkDone(seq uint64)
	Fail(ctx context.Context, seq uint64, reason string) error
}

// ErrFull is returned by Submit when the backlog is at its bound.
var ErrFull = errors.New("pipeline: backlog full")

// ErrClosed is returned by Submit after Close.
var ErrClosed = errors.New("pipeline: closed")

// Sequencer admits events and grants their turns (coord.Coordinator).
type Sequencer interface {
	Admit(ctx context.Context, eventID, orderKey, owner string) (coord.Ticket, error)
	Turn(ctx context.Context, orderKey string, t coord.Ticket) (coord.Turn, error)
}

// Options tunes the pipeline.
type Options struct {
	// Sequencer coordinates with other replicas (default: this process only).
	Sequencer Sequencer
	// Replica names this process in admissions; with the journal sequence
	// it makes the owner, so a replay after a restart is recognized as this
	// replica's own admission. Default "local".
	Replica     string
	Workers     int           // events processed at once across rooms (default 16)
	MaxBacklog  int           // accepted, unfinished events before Submit refuses (default 10000)
	MaxAttempts int           // tries per event before it is failed (default 10)
	Backoff     time.Duration // first retry delay, doubling (default 100 ms)
	MaxBackoff  time.Duration // cap of the retry delay (default 30 s)
	// Settle, when set, waits until what the sink started for the given
	// events is finished (the plugins' calls made, their requests delivered
	// or dead) or ctx ends. The turn is handed on only then, for up to
	// SettleTimeout, so that with several replicas a room's notifications
	// leave in order even though each replica sends its own.
	Settle        func(ctx context.Context, eventIDs []string)
	SettleTimeout time.Duration // default 5 s
	// Idle, when set, tells from an event alone that processing it would
	// do nothing: the stage would skip it and the sink call nobody. Accept
	// then finishes it at once, marked done in the journal, without an
	// admission or a turn: a webhook nobody reads has no order to keep,
	// and no other replica's work to wait for. It must not block.
	Idle func(ev *event.Event) bool
	// AdmitTimeout bounds Accept's and Readmit's wait for the coordinator
	// (default 3 s). The webhook is then refused with 503: the sender
	// retries, and its later events of the room wait behind the retry, so
	// refusing keeps the order. The bound is set here, where the
	// coordinator is called, rather than by the caller: an idle event has
	// no admission, and its webhook no timer to start and stop.
	AdmitTimeout time.Duration
	// Reload reads an accepted event back from the journal by its seq.
	// When it is set, admitted events beyond the first InMemory waiting to
	// be processed keep only their seq, id and ticket, and are read back
	// when a worker takes them: a full backlog then holds their places,
	// not their webhooks (BenchmarkBacklogMemory).
	Reload   func(seq uint64) (*event.Event, error)
	InMemory int // admitted events waiting with their event in memory (default 1024)
	Logger   *slog.Logger
}

// Pipeline is the keyed executor. Create it with New, start it with Run.
type Pipeline struct {
	stage   Stage
	sink    Sink
	journal Journal
	opts    Options
	log     *slog.Logger
	// jobs feeds the Workers goroutines that process events; an event
	// waiting for its turn holds none, so rooms waiting on other replicas
	// never starve the rooms that can go.
	jobs    chan func()
	workers sync.WaitGroup

	mu      sync.Mutex
	keys    map[string]*keyState
	waiting map[string]string // unadmitted event id -> order key
	backlog int
	// inMemory counts the queued (admitted, waiting) events that keep
	// their event; the others are read back (Options.Reload).
	inMemory int
	// reserved counts slots taken by webhooks being recorded: the bound
	// holds even when many arrive at once.
	reserved int
	closed   bool
	runCtx   context.Context // set by Run; nil before
	stopping bool            // Run is returning
	runners  sync.WaitGroup
	kick     chan struct{} // wakes the admission loop
	idle     *sync.Cond    // signalled when backlog drops
}

// keyState is one order key's events: those recorded but not yet admitted,
// and those admitted, in ticket order, waiting to be processed.
type keyState struct {
	admitting  sync.Mutex // one admission of the key at a time, in journal order
	unadmitted []item     // under Pipeline.mu
	queue      []item     // under Pipeline.mu
	running    bool       // a runner drains queue (under Pipeline.mu)
}

type item struct {
	ev     *event.Event // nil once admitted past Options.InMemory: read back
	id     string       // the event's id
	seq    uint64
	ticket coord.Ticket
}

// New returns a pipeline; nothing runs until Run.
func New(stage Stage, sink Sink, j Journal, opts Options) *Pipeline {
	if opts.Workers <= 0 {
		opts.Workers = 16
	}
	if opts.MaxBacklog <= 0 {
		opts.MaxBacklog = 10000
	}
	if opts.InMemory <= 0 {
		opts.InMemory = 1024
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 10
	}
	if opts.Backoff <= 0 {
		opts.Backoff = 100 * time.Millisecond
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 30 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.AdmitTimeout <= 0 {
		opts.AdmitTimeout = 3 * time.Second
	}
	if opts.SettleTimeout <= 0 {
		opts.SettleTimeout = 5 * time.Second
	}
	if opts.Sequencer == nil {
		opts.Sequencer = coord.NewInProcess(nil)
	}
	if opts.Replica == "" {
		opts.Replica = "local"
	}
	p := &Pipeline{
		stage: stage, sink: sink, journal: j, opts: opts, log: opts.Logger,
		jobs: make(chan func()),
		keys: map[string]*keyState{}, waiting: map[string]string{},
		kick: make(chan struct{}, 1),
	}
	p.idle = sync.NewCond(&p.mu)
	return p
}

// Submit queues an accepted event, recorded in the journal under seq, for
// admission in the background. When force is false it refuses with ErrFull
// at the backlog bound; replay after a restart forces, since those events
// are already accepted.
func (p *Pipeline) Submit(ev *event.Event, seq uint64, force bool) error {
	if err := p.add(ev, seq, force); err != nil {
		return err
	}
	p.wake()
	return nil
}

// add records an event as accepted and not yet admitted.
func (p *Pipeline) add(ev *event.Event, seq uint64, force bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	if !force && p.backlog >= p.opts.MaxBacklog {
		return ErrFull
	}
	p.backlog++
	metrics.Backlog.Set(float64(p.backlog))
	key := ev.OrderKey()
	ks := p.keys[key]
	if ks == nil {
		ks = &keyState{}
		p.keys[key] = ks
	}
	ks.unadmitted = append(ks.unadmitted, item{ev: ev, id: ev.ID, seq: seq})
	p.waiting[ev.ID] = key
	return nil
}

// Backlog is the number of accepted events not yet finished.
func (p *Pipeline) Backlog() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.backlog
}

// Full reports whether the backlog is at its bound.
func (p *Pipeline) Full() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.backlog+p.reserved >= p.opts.MaxBacklog
}

// Reserve takes a backlog slot for a webhook about to be recorded, or
// reports false at the bound. The caller submits the event (forced) or
// gives up, then calls Unreserve.
func (p *Pipeline) Reserve() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.backlog+p.reserved >= p.opts.MaxBacklog {
		return false
	}
	p.reserved++
	return true
}

// Unreserve returns a slot Reserve took.
func (p *Pipeline) Unreserve() {
	p.mu.Lock()
	p.reserved--
	p.mu.Unlock()
}

// Run processes events until ctx ends; then it returns once the events being
// processed are finished. Events still queued stay pending in the journal
// and are replayed on the next start. Call it once.
func (p *Pipeline) Run(ctx context.Context) {
	p.mu.Lock()
	p.runCtx = ctx
	for key, ks := range p.keys {
		p.startLocked(key, ks)
	}
	p.mu.Unlock()
	for range p.opts.Workers {
		p.workers.Go(func() {
			for job := range p.jobs {
				job()
			}
		})
	}
	p.admitLoop(ctx)
	p.mu.Lock()
	p.stopping = true // no runner starts once Wait may have begun
	p.mu.Unlock()
	p.runners.Wait()
	close(p.jobs)
	p.workers.Wait()
}

// Close refuses further events. Call it before cancelling Run's context.
func (p *Pipeline) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
}

// startLocked starts a runner for the key if it has admitted events and
// none runs yet. Call with p.mu held.
func (p *Pipeline) startLocked(key string, ks *keyState) {
	if ks.running || len(ks.queue) == 0 || p.runCtx == nil || p.stopping {
		return
	}
	ks.running = true
	ctx := p.runCtx
	p.runners.Add(1)
	reuse.Go(func() {
		defer p.runners.Done()
		p.drain(ctx, key, ks)
	})
}

// drain processes the admitted events of one key in ticket order until none
// is left.
func (p *Pipeline) drain(ctx context.Context, key string, ks *keyState) {
	for {
		p.mu.Lock()
		if len(ks.queue) == 0 || ctx.Err() != nil {
			if n := len(ks.queue); n > 0 {
				// Shutting down: leave the rest in the journal for replay.
				for _, it := range ks.queue {
					p.dequeuedLocked(it)
				}
				ks.queue = nil
				p.finishedLocked(n)
			}
			ks.running = false
			p.dropIfEmptyLocked(key, ks)
			p.mu.Unlock()
			return
		}
		it := ks.queue[0]
		ks.queue = ks.queue[1:]
		p.dequeuedLocked(it)
		p.mu.Unlock()

		p.process(ctx, key, it)

		p.mu.Lock()
		p.finishedLocked(1)
		p.mu.Unlock()
	}
}

// queuedLocked puts an admitted event in its key's queue, without its
// event past Options.InMemory when it can be read back. Call with p.mu held.
func (p *Pipeline) queuedLocked(ks *keyState, it item) {
	if p.opts.Reload != nil && p.inMemory >= p.opts.InMemory {
		it.ev = nil
	} else {
		p.inMemory++
	}
	ks.queue = append(ks.queue, it)
}

// dequeuedLocked counts an event out of its key's queue. Call with p.mu
// held.
func (p *Pipeline) dequeuedLocked(it item) {
	if it.ev != nil {
		p.inMemory--
	}
}

// finishedLocked takes n events off the backlog. Call with p.mu held.
func (p *Pipeline) finishedLocked(n int) {
	p.backlog -= n
	metrics.Backlog.Set(float64(p.backlog))
	p.idle.Broadcast()
}

// dropIfEmptyLocked forgets a key with nothing left. Call with p.mu held.
func (p *Pipeline) dropIfEmptyLocked(key string, ks *keyState) {
	if !ks.running && len(ks.queue) == 0 && len(ks.unadmitted) == 0 && p.keys[key] == ks {
		delete(p.keys, key)
	}
}

// maxCoordBackoff caps the wait between attempts to reach the coordinator,
// so processing resumes within a second once it is back.
const maxCoordBackoff = time.Second

// turn waits for the event's turn, retrying for as long as the coordinator
// is unreachable: an outage is no fault of the event, which waits safely in
// the journal, so it does not use up the event's attempts. It returns ctx's
// error on shutdown.
func (p *Pipeline) turn(ctx context.Context, key string, it item, log *slog.Logger) (coord.Turn, error) {
	wait := min(p.opts.Backoff, maxCoordBackoff)
	for {
		start := time.Now()
		tu, err := p.opts.Sequencer.Turn(ctx, key, it.ticket)
		metrics.ProcessSeconds.WithLabelValues("turn").Observe(time.Since(start).Seconds())
		if err == nil {
			return tu, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		metrics.CoordinationErrors.Inc()
		log.Warn("cannot get the event's turn; retrying", "retry_in", wait.String(), "err", err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(wait*2, maxCoordBackoff)
	}
}

// doneTimeout bounds recording a turn done once the event is finished, also
// at shutdown: past it, the room's next event waits for the coordinator to
// give this one up.
const doneTimeout = 30 * time.Second

// process runs one admitted event in its turn through the stage and the
// sink with retries, then records the outcome in the journal and the turn
// as done. If this replica loses its coordination session meanwhile, the
// work stops and the event waits for a turn again. An event that cannot be
// read back from the journal is failed in its turn, so that the key's
// later events go on.
func (p *Pipeline) process(ctx context.Context, key string, it item) {
	var log *slog.Logger
	if it.ev != nil {
		log = eventLogger(p.log, it.ev)
	} else {
		log = p.log.With("event_id", it.id)
	}
	var st attempt
	var readErr error
	for {
		tu, err := p.turn(ctx, key, it, log)
		if err != nil {
			return // shutting down: the event stays pending and is replayed
		}
		if tu.Late() {
			metrics.EventsProcessed.WithLabelValues("late").Inc()
			log.Warn("event processed late: later events of its room were processed before it, while the replica holding it had lost its coordination session")
		}
		ran, finished := p.onWorker(ctx, func() bool {
			if it.ev == nil && readErr == nil {
				// Read back only now: waiting for its turn and a worker,
				// the event held its place alone.
				if it.ev, readErr = p.readBack(it); readErr == nil {
					log = eventLogger(p.log, it.ev)
				}
			}
			if readErr != nil {
				return p.giveUp(ctx, it, &st, fmt.Errorf("read the event back from the journal: %w", readErr), log)
			}
			wctx, cancel := context.WithCancel(ctx)
			defer cancel()
			stopFence := context.AfterFunc(tu.Context(), cancel)
			defer stopFence()
			return p.handle(wctx, it, &st, log)
		})
		if !ran {
			return // shutting down
		}
		if !finished && ctx.Err() == nil && tu.Context().Err() != nil {
			metrics.EventsProcessed.WithLabelValues("fenced").Inc()
			log.Warn("event processing stopped: this replica lost its coordination session; waiting for the event's turn again")
			continue
		}
		if finished {
			// Logged before the turn is handed on: the room's next event,
			// maybe on another replica, cannot log before this line.
			if log.Enabled(ctx, slog.LevelDebug) {
				log.Debug("event finished", "ticket", it.ticket.N, "late", tu.Late())
			}
			p.settle(ctx, it, &st, log)
			dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), doneTimeout)
			if err := tu.Done(dctx); err != nil {
				log.Error("recording the event's turn done failed; the room's next event waits until the coordinator gives it up", "err", err)
			}
			dcancel()
		}
		return
	}
}

// settle waits, up to SettleTimeout, for what the sink started for the
// event and the events derived from it to finish.
func (p *Pipeline) settle(ctx context.Context, it item, st *attempt, log *slog.Logger) {
	if p.opts.Settle == nil {
		return
	}
	ids := []string{it.id}
	for _, d := range st.derived {
		ids = append(ids, d.ID)
	}
	sctx, cancel := context.WithTimeout(ctx, p.opts.SettleTimeout)
	defer cancel()
	start := time.Now()
	p.opts.Settle(sctx, ids)
	metrics.ProcessSeconds.WithLabelValues("settle").Observe(time.Since(start).Seconds())
	if sctx.Err() != nil && ctx.Err() == nil {
		log.Warn("the event's notifications are not all delivered yet; the room's next event goes on, and their order at the destination is no longer certain", "waited", p.opts.SettleTimeout.String())
	}
}

// attempt is what survives between tries of one event: the stage's side
// effects (data messages, the recording lock) happen once, so a retry after
// a sink failure runs the sink alone.
type attempt struct {
	staged  bool
	derived []*event.Event
	tries   int
	wait    time.Duration
}

// handle tries the event until it is done or failed (true), or until ctx
// ends (false: shutdown or fencing; the event stays pending).
func (p *Pipeline) handle(ctx context.Context, it item, st *attempt, log *slog.Logger) bool {
	ev := it.ev
	if st.wait == 0 {
		st.wait = p.opts.Backoff
	}
	var err error
	for {
		st.tries++
		err = p.once(ctx, ev, st, log)
		if err == nil {
			metrics.EventsProcessed.WithLabelValues("done").Inc()
			p.journal.MarkDone(it.seq)
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		if st.tries >= p.opts.MaxAttempts || errors.Is(err, event.ErrMalformed) {
			break // a body that does not decode never will
		}
		metrics.EventsProcessed.WithLabelValues("retried").Inc()
		log.Warn("event processing failed; retrying", "attempt", st.tries, "retry_in", st.wait.String(), "err", err)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(st.wait):
		}
		st.wait = min(st.wait*2, p.opts.MaxBackoff)
	}
	return p.giveUp(ctx, it, st, err, log)
}

// onWorker runs f on one of the Workers goroutines once one is free, and
// reports whether it ran (not when ctx ended first) and what it returned.
// An event's work runs there rather than on its own goroutine so that only
// those few grow the deep stacks of the Meet logic, the store's SDK and the
// plugin calls; the goroutines of events waiting for their turn or for a
// worker stay small (docs/benchmarks.md, "Memory, fifth round").
func (p *Pipeline) onWorker(ctx context.Context, f func() bool) (ran, result bool) {
	done := make(chan bool, 1)
	job := func() {
		if ctx.Err() != nil { // both were ready: shutdown wins
			close(done)
			return
		}
		done <- f()
	}
	select {
	case p.jobs <- job:
	case <-ctx.Done():
		return false, false
	}
	result, ran = <-done
	return ran, result
}

// readBack reads an event admitted without it (Options.InMemory) back from
// the journal.
func (p *Pipeline) readBack(it item) (*event.Event, error) {
	ev, err := p.opts.Reload(it.seq)
	if err != nil {
		return nil, err
	}
	if ev.ID != it.id {
		return nil, fmt.Errorf("journal seq %d holds event %s", it.seq, ev.ID)
	}
	metrics.BacklogReadBack.Inc()
	return ev, nil
}

// giveUp records the event as failed in the journal and reports it
// finished. It does so even when shutdown has begun: a finished event left
// pending would be processed a second time after the restart.
func (p *Pipeline) giveUp(ctx context.Context, it item, st *attempt, err error, log *slog.Logger) bool {
	metrics.EventsProcessed.WithLabelValues("failed").Inc()
	log.Error("event processing gave up", "attempts", st.tries, "err", err)
	if ferr := p.journal.Fail(context.WithoutCancel(ctx), it.seq, err.Error()); ferr != nil {
		log.Error("recording the failed event failed", "err", ferr)
	}
	return true
}

func (p *Pipeline) once(ctx context.Context, ev *event.Event, st *attempt, log *slog.Logger) (err error) {
	defer func() {
		// A bug in one event's handling must not take the service down.
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	if !st.staged {
		start := time.Now()
		derived, err := p.stage(ctx, ev, log)
		metrics.ProcessSeconds.WithLabelValues("meet").Observe(time.Since(start).Seconds())
		if err != nil {
			return err
		}
		st.staged, st.derived = true, derived
	}
	start := time.Now()
	err = p.sink(ctx, append([]*event.Event{ev}, st.derived...), log)
	metrics.ProcessSeconds.WithLabelValues("sink").Observe(time.Since(start).Seconds())
	return err
}

// WaitIdle blocks until no event is queued or being processed, or ctx ends.
// Tests and graceful shutdown use it.
func (p *Pipeline) WaitIdle(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() {
		p.mu.Lock()
		p.idle.Broadcast()
		p.mu.Unlock()
	})
	defer stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.backlog > 0 {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		p.idle.Wait()
	}
	return nil
}
