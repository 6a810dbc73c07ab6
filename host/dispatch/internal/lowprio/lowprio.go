// Package lowprio runs functions on OS threads of lower CPU priority.
//
// Plugin calls are CPU-bound guest code that a hostile or merely busy
// plugin keeps running up to its time limit. The dispatcher already bounds
// how many run at once; running them on threads with a higher nice value
// also makes the kernel prefer the accept path, the pipeline and the
// deliveries whenever they compete with a plugin for a core, so a busy
// plugin takes the CPU that is left over rather than an equal share.
//
// A thread's priority cannot be raised again without privileges, so a
// worker keeps its thread for life: it locks its goroutine to the thread
// and never unlocks it, and the Go runtime ends the thread when the worker
// returns.
package lowprio

import (
	"runtime"
	"time"
)

// idleTimeout is how long a worker with nothing to do keeps its thread.
const idleTimeout = 10 * time.Second

// Pool runs functions on worker goroutines locked to lowered-priority
// threads. It grows to as many workers as calls run at once and shrinks
// when they stay idle. The zero value is not usable; see New.
type Pool struct {
	nice int
	work chan func()
}

// New returns a pool whose threads run at the given nice value (0 to 19;
// higher is lower priority). Where lowering a thread's priority is not
// supported, or fails, the work runs at normal priority.
func New(nice int) *Pool {
	return &Pool{nice: min(max(nice, 0), 19), work: make(chan func())}
}

// Do runs fn on one of the pool's threads and returns when it has.
func (p *Pool) Do(fn func()) {
	done := make(chan struct{})
	task := func() {
		defer close(done)
		fn()
	}
	select {
	case p.work <- task: // an idle worker took it
	default:
		go p.worker(task)
	}
	<-done
}

func (p *Pool) worker(first func()) {
	runtime.LockOSThread() // for life: see the package comment
	_ = setNice(p.nice)
	first()
	idle := time.NewTimer(idleTimeout)
	defer idle.Stop()
	for {
		select {
		case fn := <-p.work:
			fn()
			idle.Reset(idleTimeout)
		case <-idle.C:
			return
		}
	}
}
