// Package lowprio runs functions on OS threads of the lowest CPU priority.
//
// Plugin calls are CPU-bound guest code that a hostile or merely busy
// plugin keeps running up to its time limit. The dispatcher already bounds
// how many run at once; running them on threads of the idle scheduling
// class (Linux's SCHED_IDLE) also makes the kernel run the accept path,
// the pipeline and the deliveries first whenever they want a core a plugin
// is using: a waking thread of the normal class preempts an idle-class one
// at once, where a higher nice value only shrinks its share.
//
// A thread's class cannot be raised again without privileges, so a worker
// keeps its thread for life: it locks its goroutine to the thread and never
// unlocks it, and the Go runtime ends the thread when the worker returns.
package lowprio

import (
	"runtime"
	"time"
)

// idleTimeout is how long a worker with nothing to do keeps its thread.
const idleTimeout = 10 * time.Second

// Pool runs functions on worker goroutines locked to idle-class threads.
// It grows to as many workers as calls run at once and shrinks when they
// stay idle. The zero value is not usable; see New.
type Pool struct {
	work chan func()
}

// New returns a pool. Where the idle class is not supported, or setting
// it fails, the work runs at normal priority.
func New() *Pool {
	return &Pool{work: make(chan func())}
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
	_ = lower()
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
