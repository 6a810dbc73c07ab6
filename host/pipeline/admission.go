package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/lkedge/lkedge/host/coord"
	"github.com/lkedge/lkedge/host/event"
	"github.com/lkedge/lkedge/host/metrics"
)

// Accept queues an event just recorded in the journal under seq and admits
// it, with the key's earlier unadmitted events first, before returning: the
// webhook may be answered 200 only once it is admitted, because that is
// what fixes its place in the room's order across replicas. An error means
// the coordinator could not be reached; the event stays recorded and is
// admitted in the background (or found to be another replica's), and the
// webhook should be refused with 503 so the sender retries. An event that
// Options.Idle says needs nothing is finished instead. The wait for the
// coordinator is bounded by Options.AdmitTimeout.
func (p *Pipeline) Accept(ctx context.Context, ev *event.Event, seq uint64) error {
	if p.opts.Idle != nil && p.opts.Idle(ev) {
		metrics.EventsProcessed.WithLabelValues("skipped").Inc()
		p.journal.MarkDone(seq)
		if p.log.Enabled(ctx, slog.LevelDebug) {
			p.log.Debug("event finished when accepted: neither Meet nor any plugin reads it", "event_id", ev.ID, "event", ev.Type, "room", ev.RoomName())
		}
		return nil
	}
	if err := p.add(ev, seq, true); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, p.opts.AdmitTimeout)
	defer cancel()
	return p.admitKey(ctx, ev.OrderKey(), ev.ID)
}

// Readmit is Accept for a webhook whose event the journal already holds (a
// retry of a delivery this replica refused): if the event is still waiting
// for its admission, it is admitted now.
func (p *Pipeline) Readmit(ctx context.Context, eventID string) error {
	p.mu.Lock()
	key, waiting := p.waiting[eventID]
	p.mu.Unlock()
	if !waiting {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, p.opts.AdmitTimeout)
	defer cancel()
	return p.admitKey(ctx, key, eventID)
}

// admitKey admits the key's unadmitted events in journal order, until all
// are admitted or one fails. It reports an error only if the event named by
// upTo ("" for none) is still unadmitted.
func (p *Pipeline) admitKey(ctx context.Context, key, upTo string) error {
	p.mu.Lock()
	ks := p.keys[key]
	p.mu.Unlock()
	if ks == nil {
		return nil
	}
	ks.admitting.Lock()
	defer ks.admitting.Unlock()
	for {
		p.mu.Lock()
		if len(ks.unadmitted) == 0 {
			p.dropIfEmptyLocked(key, ks)
			p.mu.Unlock()
			return nil
		}
		it := ks.unadmitted[0]
		p.mu.Unlock()

		owner := p.opts.Replica + "/" + strconv.FormatUint(it.seq, 10)
		start := time.Now()
		t, err := p.opts.Sequencer.Admit(ctx, it.id, key, owner)
		metrics.ProcessSeconds.WithLabelValues("admit").Observe(time.Since(start).Seconds())
		if err != nil && !errors.Is(err, coord.ErrDuplicate) {
			metrics.CoordinationErrors.Inc()
			if upTo == "" {
				return err // the background loop itself: it waits and retries
			}
			// Refused to the sender: the background loop takes over,
			// however long the sender takes to retry, or if it never does.
			p.wake()
			p.mu.Lock()
			_, still := p.waiting[upTo]
			p.mu.Unlock()
			if still {
				return fmt.Errorf("admit event %s: %w", it.id, err)
			}
			return nil
		}

		p.mu.Lock()
		ks.unadmitted = ks.unadmitted[1:]
		delete(p.waiting, it.id)
		if errors.Is(err, coord.ErrDuplicate) {
			p.finishedLocked(1)
		} else {
			it.ticket = t
			p.queuedLocked(ks, it)
			p.startLocked(key, ks)
		}
		p.mu.Unlock()
		if errors.Is(err, coord.ErrDuplicate) {
			metrics.EventsProcessed.WithLabelValues("duplicate").Inc()
			eventLogger(p.log, it.ev).Info("event skipped: another replica admitted it")
			p.journal.MarkDone(it.seq)
		}
	}
}

// wake nudges the admission loop.
func (p *Pipeline) wake() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// admitLoop admits, in the background, the events that were recorded but
// not admitted: replayed after a restart, or refused with 503 while the
// coordinator was unreachable. It retries at most a second apart, so
// waiting events move within a second of the coordinator's return.
func (p *Pipeline) admitLoop(ctx context.Context) {
	wait := min(p.opts.Backoff, maxCoordBackoff)
	for {
		p.mu.Lock()
		var keys []string
		for key, ks := range p.keys {
			if len(ks.unadmitted) > 0 {
				keys = append(keys, key)
			}
		}
		p.mu.Unlock()
		failed := 0
		var lastErr error
		for _, key := range keys {
			if err := p.admitKey(ctx, key, ""); err != nil {
				failed++
				lastErr = err
			}
		}
		var retry <-chan time.Time
		if failed > 0 {
			if ctx.Err() == nil {
				p.log.Warn("cannot admit accepted events; retrying", "rooms", failed, "retry_in", wait.String(), "err", lastErr)
			}
			retry = time.After(wait)
			wait = min(wait*2, maxCoordBackoff)
		} else {
			wait = min(p.opts.Backoff, maxCoordBackoff)
		}
		select {
		case <-ctx.Done():
			return
		case <-p.kick:
		case <-retry:
		}
	}
}
