package coord

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// subscriberBuffer is how many undelivered events a subscriber may fall
// behind before further events to it are dropped. Publish never waits for a
// subscriber, so one stuck reader cannot stall the whole process.
const subscriberBuffer = 64

// InProcess is the single-machine Coordinator: locks live in a map and events
// fan out to channels in memory. It coordinates the goroutines of one
// process only; several replicas need the Consul backend.
//
// Events are delivered at most once: a subscriber whose buffer is full misses
// the event (counted by Dropped) rather than blocking Publish.
type InProcess struct {
	now func() time.Time

	mu      sync.Mutex
	locks   map[string]LockInfo
	subs    map[string]map[*subscriber]struct{} // event type -> subscribers
	seq     inProcSeq
	leaders map[string]chan struct{} // role -> closed when its leader steps down

	dropped atomic.Uint64
}

type subscriber struct {
	ch chan Event
}

var _ Coordinator = (*InProcess)(nil)

// NewInProcess returns an empty in-process coordinator. now is the clock used
// for lock expiry, injectable so tests can expire locks without sleeping; nil
// means time.Now.
func NewInProcess(now func() time.Time) *InProcess {
	if now == nil {
		now = time.Now
	}
	return &InProcess{
		now:   now,
		locks: make(map[string]LockInfo),
		subs:  make(map[string]map[*subscriber]struct{}),
	}
}

// Acquire takes the named lock for ttl unless someone holds it unexpired. An
// expired lock is free, so a holder that died cannot block others forever.
func (c *InProcess) Acquire(ctx context.Context, name string, ttl time.Duration) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if name == "" {
		return false, errors.New("coord: acquire: empty lock name")
	}
	if ttl <= 0 {
		return false, fmt.Errorf("coord: acquire %q: ttl %v must be positive", name, ttl)
	}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if l, ok := c.locks[name]; ok && now.Before(l.ExpiresAt) {
		return false, nil
	}
	c.locks[name] = LockInfo{Name: name, AcquiredAt: now, ExpiresAt: now.Add(ttl)}
	return true, nil
}

// Release frees the named lock. It reports true only if the lock was held
// and unexpired: releasing an expired lock reports false, as the lock had
// already lapsed.
func (c *InProcess) Release(ctx context.Context, name string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	l, ok := c.locks[name]
	if !ok {
		return false, nil
	}
	delete(c.locks, name)
	return now.Before(l.ExpiresAt), nil
}

// Locks lists the unexpired locks whose names start with prefix, sorted by
// name. Expired locks found on the way are forgotten.
func (c *InProcess) Locks(ctx context.Context, prefix string) ([]LockInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := c.now()
	c.mu.Lock()
	var out []LockInfo
	for name, l := range c.locks {
		if !now.Before(l.ExpiresAt) {
			delete(c.locks, name)
			continue
		}
		if strings.HasPrefix(name, prefix) {
			out = append(out, l)
		}
	}
	c.mu.Unlock()
	slices.SortFunc(out, func(a, b LockInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Publish hands ev to every current subscriber of ev.Type without waiting:
// a subscriber with a full buffer misses it. The payload is copied once, so
// the caller may reuse its buffer; subscribers share the copy and must treat
// it as read-only.
func (c *InProcess) Publish(ctx context.Context, ev Event) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if ev.Type == "" {
		return errors.New("coord: publish: empty event type")
	}
	ev.Payload = slices.Clone(ev.Payload)
	c.mu.Lock()
	defer c.mu.Unlock()
	// Sending under mu is what keeps this safe against the close in
	// Subscribe's cleanup, which also runs under mu.
	for s := range c.subs[ev.Type] {
		select {
		case s.ch <- ev:
		default:
			c.dropped.Add(1)
		}
	}
	return nil
}

// Subscribe returns a channel of the events of eventType published from now
// on. The channel is closed, and the subscription forgotten, once ctx ends.
func (c *InProcess) Subscribe(ctx context.Context, eventType string) (<-chan Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if eventType == "" {
		return nil, errors.New("coord: subscribe: empty event type")
	}
	s := &subscriber{ch: make(chan Event, subscriberBuffer)}
	c.mu.Lock()
	set := c.subs[eventType]
	if set == nil {
		set = make(map[*subscriber]struct{})
		c.subs[eventType] = set
	}
	set[s] = struct{}{}
	c.mu.Unlock()

	// AfterFunc starts no goroutine until ctx ends, and runs the cleanup
	// right away if ctx ended in the meantime.
	context.AfterFunc(ctx, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		delete(set, s)
		if len(c.subs[eventType]) == 0 {
			delete(c.subs, eventType) // keep the map from growing with dead types
		}
		close(s.ch)
	})
	return s.ch, nil
}

// Dropped reports how many event deliveries were skipped because the
// subscriber's buffer was full, so a caller can tell lossy delivery happened.
func (c *InProcess) Dropped() uint64 {
	return c.dropped.Load()
}

// admitWindow is how long an admitted event id is remembered.
const admitWindow = 10 * time.Minute

// inProcSeq is the in-process admission state: who admitted each event, and
// each order key's sequence.
//
// An admission is remembered for ten minutes, long after its event is
// done, so it is kept small: ids and owners by a 64-bit hash, as the
// journal keeps the ids it has seen. At 500 events/s that is 300 000
// admissions; that two different ids among them share a hash has a chance
// of about 2 in 10^9, and the later one would be taken for a duplicate.
type inProcSeq struct {
	seed   maphash.Seed
	events map[uint64]admitted // hash of the event id -> admission
	byAge  []uint64            // hashes of event ids in admission order, for pruning
	keys   map[string]*keySeq
	epochs uint64 // epochs handed out so far
}

type admitted struct {
	owner  uint64 // hash of the owner
	ticket Ticket
	at     int64 // Unix nanoseconds
}

// keySeq is one order key's sequence: tickets up to issued were given out,
// those up to done are finished. changed is closed and replaced whenever
// done moves.
type keySeq struct {
	epoch   uint64
	issued  uint64
	done    uint64
	changed chan struct{}
}

// Admit implements Coordinator within one process.
func (c *InProcess) Admit(ctx context.Context, eventID, orderKey, owner string) (Ticket, error) {
	if eventID == "" || orderKey == "" || owner == "" {
		return Ticket{}, errors.New("coord: admit needs an event id, an order key and an owner")
	}
	if err := ctx.Err(); err != nil {
		return Ticket{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seq.events == nil {
		c.seq = inProcSeq{seed: maphash.MakeSeed(), events: map[uint64]admitted{}, keys: map[string]*keySeq{}}
	}
	now := c.now().UnixNano()
	for len(c.seq.byAge) > 0 && now-c.seq.events[c.seq.byAge[0]].at > int64(admitWindow) {
		delete(c.seq.events, c.seq.byAge[0])
		c.seq.byAge = c.seq.byAge[1:]
	}
	id, own := maphash.String(c.seq.seed, eventID), maphash.String(c.seq.seed, owner)
	if a, ok := c.seq.events[id]; ok {
		if a.owner != own {
			return Ticket{}, ErrDuplicate
		}
		return a.ticket, nil
	}
	ks := c.seq.keys[orderKey]
	if ks == nil {
		c.seq.epochs++
		ks = &keySeq{epoch: c.seq.epochs, changed: make(chan struct{})}
		c.seq.keys[orderKey] = ks
	}
	ks.issued++
	t := Ticket{Epoch: ks.epoch, N: ks.issued}
	c.seq.events[id] = admitted{owner: own, ticket: t, at: now}
	c.seq.byAge = append(c.seq.byAge, id)
	return t, nil
}

// Turn implements Coordinator within one process.
func (c *InProcess) Turn(ctx context.Context, orderKey string, t Ticket) (Turn, error) {
	for {
		c.mu.Lock()
		ks := c.seq.keys[orderKey]
		if ks == nil || ks.epoch != t.Epoch || ks.done >= t.N {
			c.mu.Unlock()
			return &inProcTurn{c: c, key: orderKey, t: t, late: true}, nil
		}
		if ks.done+1 == t.N {
			c.mu.Unlock()
			return &inProcTurn{c: c, key: orderKey, t: t}, nil
		}
		changed := ks.changed
		c.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-changed:
		}
	}
}

type inProcTurn struct {
	c    *InProcess
	key  string
	t    Ticket
	late bool
}

// Context never ends: one process cannot lose its own coordination.
func (tu *inProcTurn) Context() context.Context { return context.Background() }

func (tu *inProcTurn) Late() bool { return tu.late }

func (tu *inProcTurn) Done(context.Context) error {
	c := tu.c
	c.mu.Lock()
	defer c.mu.Unlock()
	ks := c.seq.keys[tu.key]
	if ks == nil || ks.epoch != tu.t.Epoch || ks.done >= tu.t.N {
		return nil
	}
	ks.done = tu.t.N
	close(ks.changed)
	ks.changed = make(chan struct{})
	if ks.done == ks.issued {
		delete(c.seq.keys, tu.key)
	}
	return nil
}

// Lead runs fn once no other Lead call of this process runs it for role: a
// single process is its own cluster, and one of its callers leads at a time.
func (c *InProcess) Lead(ctx context.Context, role string, fn func(ctx context.Context)) error {
	for {
		c.mu.Lock()
		if c.leaders == nil {
			c.leaders = map[string]chan struct{}{}
		}
		busy, taken := c.leaders[role]
		if !taken {
			free := make(chan struct{})
			c.leaders[role] = free
			c.mu.Unlock()
			fn(ctx)
			c.mu.Lock()
			delete(c.leaders, role)
			c.mu.Unlock()
			close(free)
			return ctx.Err()
		}
		c.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-busy:
		}
	}
}

// Ping always succeeds: nothing outside the process can fail.
func (c *InProcess) Ping(ctx context.Context) error { return ctx.Err() }
