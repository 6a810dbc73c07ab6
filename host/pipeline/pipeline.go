// Package pipeline processes accepted events: one at a time and in arrival
// order per room (or per resource), in parallel across rooms, with retries,
// and marks each done or failed in the journal it was recorded in. Before
// handling an event it claims it through the coordinator, so with several
// replicas each event is handled once and a room's events one at a time.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/lkedge/lkedge/host/coord"
	"github.com/lkedge/lkedge/host/event"
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

// Claimer lets one replica at a time handle an event, and one event of a
// room at a time across replicas (coord.Coordinator).
type Claimer interface {
	Claim(ctx context.Context, eventID, orderKey, owner string) (coord.Claim, error)
}

// Options tunes the pipeline.
type Options struct {
	// Claimer coordinates with other replicas (default: this process only).
	Claimer Claimer
	// Replica names this process in claims; with the journal sequence it
	// makes the claim owner, so a replay after a restart is recognized as
	// this replica's own claim. Default "local".
	Replica     string
	Workers     int           // events processed at once across rooms (default 16)
	MaxBacklog  int           // accepted, unfinished events before Submit refuses (default 10000)
	MaxAttempts int           // tries per event before it is failed (default 10)
	Backoff     time.Duration // first retry delay, doubling (default 100 ms)
	MaxBackoff  time.Duration // cap of the retry delay (default 30 s)
	Logger      *slog.Logger
}

// Pipeline is the keyed executor. Create it with New, start it with Run.
type Pipeline struct {
	stage   Stage
	sink    Sink
	journal Journal
	opts    Options
	log     *slog.Logger

	mu      sync.Mutex
	queues  map[string][]item // waiting events per order key; present while a worker owns the key
	backlog int
	// reserved counts slots taken by webhooks being recorded: the bound
	// holds even when many arrive at once.
	reserved int
	closed   bool
	ready    chan string // keys with work and no worker
	idle     *sync.Cond  // signalled when backlog drops
}

type item struct {
	ev  *event.Event
	seq uint64
}

// New returns a pipeline; nothing runs until Run.
func New(stage Stage, sink Sink, j Journal, opts Options) *Pipeline {
	if opts.Workers <= 0 {
		opts.Workers = 16
	}
	if opts.MaxBacklog <= 0 {
		opts.MaxBacklog = 10000
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
	if opts.Claimer == nil {
		opts.Claimer = coord.NewInProcess(nil)
	}
	if opts.Replica == "" {
		opts.Replica = "local"
	}
	p := &Pipeline{
		stage: stage, sink: sink, journal: j, opts: opts, log: opts.Logger,
		queues: map[string][]item{},
		// Every key in ready has at least one queued event, so the backlog
		// bound (plus replayed events) bounds the channel too.
		ready: make(chan string, opts.MaxBacklog),
	}
	p.idle = sync.NewCond(&p.mu)
	return p
}

// Submit queues an accepted event, recorded in the journal under seq. When
// force is false it refuses with ErrFull at the backlog bound; replay after a
// restart forces, since those events are already accepted.
func (p *Pipeline) Submit(ev *event.Event, seq uint64, force bool) error {
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
	q, owned := p.queues[key]
	p.queues[key] = append(q, item{ev, seq})
	if !owned {
		select {
		case p.ready <- key:
		default:
			// Only forced replay can overflow the channel: hand the key over
			// without holding the lock.
			go func() { p.ready <- key }()
		}
	}
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
// and are replayed on the next start.
func (p *Pipeline) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for range p.opts.Workers {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case key := <-p.ready:
					p.drain(ctx, key)
				}
			}
		})
	}
	wg.Wait()
}

// Close refuses further events. Call it before cancelling Run's context.
func (p *Pipeline) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
}

// drain processes the events of one key in order until none is left.
func (p *Pipeline) drain(ctx context.Context, key string) {
	for {
		p.mu.Lock()
		q := p.queues[key]
		if len(q) == 0 || ctx.Err() != nil {
			if len(q) == 0 {
				delete(p.queues, key)
			} else {
				// Shutting down: leave the rest in the journal for replay.
				delete(p.queues, key)
				p.backlog -= len(q)
				metrics.Backlog.Set(float64(p.backlog))
			}
			p.mu.Unlock()
			return
		}
		it := q[0]
		p.queues[key] = q[1:]
		p.mu.Unlock()

		p.process(ctx, it)

		p.mu.Lock()
		p.backlog--
		metrics.Backlog.Set(float64(p.backlog))
		p.idle.Broadcast()
		p.mu.Unlock()
	}
}

// maxClaimBackoff caps the wait between claim attempts, so processing
// resumes within seconds once the coordinator is back.
const maxClaimBackoff = 5 * time.Second

// claim claims the event, retrying for as long as the coordinator is
// unreachable: an outage is no fault of the event, which waits safely in the
// journal, so it does not use up the event's attempts. It returns
// coord.ErrDuplicate, or ctx's error on shutdown.
func (p *Pipeline) claim(ctx context.Context, it item, log *slog.Logger) (coord.Claim, error) {
	owner := p.opts.Replica + "/" + strconv.FormatUint(it.seq, 10)
	wait := p.opts.Backoff
	for {
		start := time.Now()
		claim, err := p.opts.Claimer.Claim(ctx, it.ev.ID, it.ev.OrderKey(), owner)
		metrics.ProcessSeconds.WithLabelValues("claim").Observe(time.Since(start).Seconds())
		if err == nil || errors.Is(err, coord.ErrDuplicate) {
			return claim, err
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		metrics.CoordinationErrors.Inc()
		metrics.EventsProcessed.WithLabelValues("claim_retried").Inc()
		log.Warn("cannot claim the event; retrying", "retry_in", wait, "err", err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(wait*2, maxClaimBackoff)
	}
}

// process claims one event, runs it through the stage and the sink with
// retries, then records the outcome in the journal.
func (p *Pipeline) process(ctx context.Context, it item) {
	ev := it.ev
	log := eventLogger(p.log, ev)
	// The outcome is recorded even when shutdown has begun: a finished event
	// left pending would be processed a second time after the restart.
	jctx := context.WithoutCancel(ctx)
	claim, err := p.claim(ctx, it, log)
	if errors.Is(err, coord.ErrDuplicate) {
		metrics.EventsProcessed.WithLabelValues("duplicate").Inc()
		log.Info("event skipped: another replica claimed it")
		p.journal.MarkDone(it.seq)
		return
	}
	if err != nil {
		return // shutting down: the event stays pending and is replayed
	}
	defer claim.End()
	wait := p.opts.Backoff
	for attempt := 1; ; attempt++ {
		err = p.once(ctx, ev, log)
		if err == nil {
			metrics.EventsProcessed.WithLabelValues("done").Inc()
			p.journal.MarkDone(it.seq)
			return
		}
		if ctx.Err() != nil {
			return // shutting down: the event stays pending and is replayed
		}
		if attempt == p.opts.MaxAttempts {
			break
		}
		metrics.EventsProcessed.WithLabelValues("retried").Inc()
		log.Warn("event processing failed; retrying", "attempt", attempt, "retry_in", wait, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(wait*2, p.opts.MaxBackoff)
	}
	metrics.EventsProcessed.WithLabelValues("failed").Inc()
	log.Error("event processing gave up", "attempts", p.opts.MaxAttempts, "err", err)
	if ferr := p.journal.Fail(jctx, it.seq, err.Error()); ferr != nil {
		log.Error("recording the failed event failed", "err", ferr)
	}
}

func (p *Pipeline) once(ctx context.Context, ev *event.Event, log *slog.Logger) (err error) {
	defer func() {
		// A bug in one event's handling must not take the service down.
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	start := time.Now()
	derived, err := p.stage(ctx, ev, log)
	metrics.ProcessSeconds.WithLabelValues("meet").Observe(time.Since(start).Seconds())
	if err != nil {
		return err
	}
	start = time.Now()
	err = p.sink(ctx, append([]*event.Event{ev}, derived...), log)
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
