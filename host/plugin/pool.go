package plugin

import (
	"sync"
	"time"
)

// idlePool holds a plugin's warm instances between calls, the one used last
// on top. A call takes the top one, so when one instance can carry the load
// the others a burst started are never taken, and their idle time tells
// Shrink they can go. A first-in, first-out pool would hand them calls in
// turn and keep every one of them warm.
type idlePool struct {
	mu    sync.Mutex
	stack []idle // idle since, in increasing order
}

type idle struct {
	inst  *instance
	since time.Time
}

// get takes the instance used last, or returns nil if none is idle.
func (q *idlePool) get() *instance {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := len(q.stack)
	if n == 0 {
		return nil
	}
	inst := q.stack[n-1].inst
	q.stack[n-1] = idle{}
	q.stack = q.stack[:n-1]
	return inst
}

// put returns inst to the pool, idle from now.
func (q *idlePool) put(inst *instance) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.stack = append(q.stack, idle{inst, time.Now()})
}

// len is how many instances are idle.
func (q *idlePool) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.stack)
}

// take removes and returns the instances beyond keep idle since before
// cutoff, those idle longest first.
func (q *idlePool) take(keep int, cutoff time.Time) []*instance {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := 0
	for n < len(q.stack)-keep && !q.stack[n].since.After(cutoff) {
		n++
	}
	out := make([]*instance, n)
	for i := range out {
		out[i] = q.stack[i].inst
	}
	q.stack = append(q.stack[:0], q.stack[n:]...)
	clear(q.stack[len(q.stack):cap(q.stack)])
	return out
}
