package deliver

import (
	"container/heap"
	"net/url"
	"time"

	"github.com/lkedge/lkedge/host/egress"
)

// maxBreakerCooldown caps the doubling of an origin's open period while it
// keeps failing its probes (unless the configured first period is longer).
const maxBreakerCooldown = 5 * time.Minute

// item is one pending delivery in memory.
type item struct {
	seq    uint64
	rec    *record   // nil once the scheduler holds RecordsInMemory others: read it when attempting
	origin string    // canonical scheme://host:port of the delivery's URL
	event  string    // the delivery's EventID, kept when rec is dropped
	due    time.Time // monotonic; zero means now
}

func newItem(seq uint64, r *record) *item {
	var origin string
	if u, err := url.Parse(r.Delivery.URL); err == nil {
		origin = egress.Origin(u)
	}
	return &item{seq: seq, rec: r, origin: origin, event: r.Delivery.EventID}
}

// qkey identifies a strictly ordered stream of deliveries.
type qkey struct{ plugin, origin, resource string }

// queue holds the pending deliveries of one qkey in enqueue order; only the
// head is ever attempted. A non-empty queue whose head is not in flight is
// either waiting in the timer heap or listed in its origin's ready list.
type queue struct {
	key   qkey
	org   *origin
	items []*item
	busy  bool // head in flight
}

// origin is the per-destination state: the concurrency limit and the
// circuit breaker.
type origin struct {
	name     string
	ready    []*queue // queues whose head is due, waiting for a slot
	queues   int      // live queues of this origin
	inflight int
	fails    int // consecutive failed attempts while closed
	open     bool
	probing  bool      // the half-open probe is in flight
	until    time.Time // while open: monotonic time the next probe may start
	cooldown time.Duration
}

// verdict is what an attempt says about its origin's health.
type verdict int

const (
	neutral verdict = iota // says nothing: not sent, refused, or aborted
	healthy                // the origin answered sensibly
	failing                // the origin failed or did not answer
)

// outcome is what an attempt means for its delivery.
type outcome int

const (
	outAborted  outcome = iota // Run stopped mid-attempt: try again later, uncharged
	outRetry                   // failed, will be retried at the given time
	outFinished                // delivered or dead-lettered: leaves the queue
)

// breakerChange reports a breaker transition so the caller can log it.
type breakerChange int

const (
	breakerSame breakerChange = iota
	breakerOpened
	breakerReopened // a half-open probe failed
	breakerClosed
)

// launch is one attempt the scheduler wants launched.
type launch struct {
	q     *queue
	it    *item
	probe bool
}

// scheduler decides which deliveries to attempt when. It does no I/O and is
// guarded by Outbox.mu.
type scheduler struct {
	workers, perDest int
	threshold        int
	records          int // most items that keep their record (Options.RecordsInMemory)
	withRecord       int // items that do
	cooldown         time.Duration
	maxCooldown      time.Duration

	queues  map[qkey]*queue
	origins map[string]*origin
	ready   map[*origin]struct{} // origins with a non-empty ready list
	timers  timerHeap

	pending  int            // items in all queues, in-flight ones included
	byEvent  map[string]int // items per event id
	inflight int
	dead     int // dead letters stored
	open     int // origins whose breaker is open
}

func newScheduler(opts Options) scheduler {
	return scheduler{
		workers:     opts.Workers,
		records:     opts.RecordsInMemory,
		perDest:     opts.PerDestination,
		threshold:   opts.BreakerThreshold,
		cooldown:    opts.BreakerCooldown,
		maxCooldown: max(maxBreakerCooldown, opts.BreakerCooldown),
		queues:      make(map[qkey]*queue),
		origins:     make(map[string]*origin),
		ready:       make(map[*origin]struct{}),
		byEvent:     make(map[string]int),
	}
}

// add appends it to its queue, creating the queue (and origin) if needed,
// and drops its record once RecordsInMemory others keep theirs.
func (s *scheduler) add(it *item, now time.Time) {
	d := &it.rec.Delivery
	key := qkey{plugin: d.Plugin, origin: it.origin, resource: d.Resource}
	q := s.queues[key]
	if q == nil {
		org := s.origins[it.origin]
		if org == nil {
			org = &origin{name: it.origin}
			s.origins[it.origin] = org
		}
		org.queues++
		q = &queue{key: key, org: org}
		s.queues[key] = q
	}
	it.origin = q.key.origin // one copy of the string per queue, not per item
	if s.withRecord < s.records {
		s.withRecord++
	} else {
		it.rec = nil
	}
	q.items = append(q.items, it)
	s.pending++
	s.byEvent[it.event]++
	if len(q.items) == 1 {
		s.place(q, now)
	}
}

// place files an idle, non-empty queue as ready or waiting on its head's
// due time.
func (s *scheduler) place(q *queue, now time.Time) {
	if q.items[0].due.After(now) {
		heap.Push(&s.timers, q)
		return
	}
	q.org.ready = append(q.org.ready, q)
	s.ready[q.org] = struct{}{}
}

// next returns the attempts to launch now and the earliest later time at
// which more could become possible without another event (zero if none).
func (s *scheduler) next(now time.Time) ([]launch, time.Time) {
	for len(s.timers) > 0 && !s.timers[0].items[0].due.After(now) {
		q := heap.Pop(&s.timers).(*queue)
		s.place(q, now)
	}
	var wake time.Time
	if len(s.timers) > 0 {
		wake = s.timers[0].items[0].due
	}
	var starts []launch
	for org := range s.ready {
		for len(org.ready) > 0 && s.inflight < s.workers && org.inflight < s.perDest {
			probe := false
			if org.open {
				if org.probing {
					break
				}
				if now.Before(org.until) {
					wake = earliest(wake, org.until)
					break
				}
				probe = true
			}
			q := org.ready[0]
			org.ready[0] = nil
			org.ready = org.ready[1:]
			q.busy = true
			org.inflight++
			s.inflight++
			if probe {
				org.probing = true
			}
			starts = append(starts, launch{q: q, it: q.items[0], probe: probe})
		}
		if len(org.ready) == 0 {
			delete(s.ready, org)
		}
	}
	return starts, wake
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || b.Before(a) {
		return b
	}
	return a
}

// finish records the end of an attempt on q's head: its effect on the
// origin's breaker and on the queue. due is the retry time for outRetry.
func (s *scheduler) finish(st launch, v verdict, out outcome, due, now time.Time) breakerChange {
	q, org := st.q, st.q.org
	q.busy = false
	org.inflight--
	s.inflight--
	change := s.judge(org, st.probe, v, now)

	switch out {
	case outRetry:
		q.items[0].due = due
	case outFinished:
		if q.items[0].rec != nil {
			s.withRecord--
		}
		if s.byEvent[q.items[0].event]--; s.byEvent[q.items[0].event] <= 0 {
			delete(s.byEvent, q.items[0].event)
		}
		q.items[0] = nil
		q.items = q.items[1:]
		s.pending--
	}
	if len(q.items) > 0 {
		s.place(q, now)
		return change
	}
	delete(s.queues, q.key)
	org.queues--
	if org.queues == 0 {
		// Nothing is waiting for this origin: forget its breaker too, so
		// an idle origin does not show as open forever. New deliveries
		// start from a closed breaker and re-open it if it still fails.
		if org.open {
			s.open--
		}
		delete(s.origins, org.name)
	}
	return change
}

// judge updates org's breaker with one attempt's verdict.
func (s *scheduler) judge(org *origin, probe bool, v verdict, now time.Time) breakerChange {
	probe = probe && org.probing // a probe whose origin was closed meanwhile is an ordinary attempt
	if probe {
		org.probing = false
	}
	switch v {
	case healthy:
		org.fails = 0
		if org.open {
			org.open, org.probing, org.cooldown = false, false, 0
			s.open--
			return breakerClosed
		}
	case failing:
		switch {
		case probe:
			org.cooldown = min(2*org.cooldown, s.maxCooldown)
			org.until = now.Add(org.cooldown)
			return breakerReopened
		case !org.open:
			org.fails++
			if org.fails >= s.threshold {
				org.open, org.fails = true, 0
				org.cooldown = s.cooldown
				org.until = now.Add(org.cooldown)
				s.open++
				return breakerOpened
			}
		}
	}
	// A neutral probe leaves the origin open with its period already over,
	// so the next due delivery becomes the probe.
	return breakerSame
}

// timerHeap orders waiting queues by their head's due time. A queue in the
// heap only ever grows at its tail, so its key never changes while there.
type timerHeap []*queue

// Len is part of heap.Interface.
func (h timerHeap) Len() int { return len(h) }

// Less is part of heap.Interface.
func (h timerHeap) Less(i, j int) bool { return h[i].items[0].due.Before(h[j].items[0].due) }

// Swap is part of heap.Interface.
func (h timerHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }

// Push is part of heap.Interface.
func (h *timerHeap) Push(x any) { *h = append(*h, x.(*queue)) }

// Pop is part of heap.Interface.
func (h *timerHeap) Pop() any {
	old := *h
	q := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return q
}
