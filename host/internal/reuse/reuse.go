// Package reuse runs short-lived work on goroutines that are kept for the
// next piece of work instead of started afresh.
//
// A new goroutine starts with a small stack. The work lkedge starts one
// for per event (the Meet stage through aws-sdk-go-v2's deep middleware
// chain, a plugin call through wazero, a delivery through net/http) grows
// it several times, and every growth copies the stack, which took a large
// share of lkedge's CPU on the full path (docs/benchmarks.md). A kept
// goroutine keeps its grown stack until the garbage collector shrinks it
// while it waits, so the copies happen about once per collection instead
// of once per event. The pool is ants' (github.com/panjf2000/ants), with
// no bound: callers keep their own limits.
package reuse

import (
	"sync"
	"time"

	"github.com/panjf2000/ants/v2"
)

// idle is how long a kept goroutine waits for work before it ends.
const idle = 10 * time.Second

// pool is made on first use: its scavenger goroutines need not run in a
// process (a CLI command) that never starts work.
var pool = sync.OnceValue(func() *ants.Pool {
	p, err := ants.NewPool(-1, ants.WithExpiryDuration(idle), ants.WithPanicHandler(func(v any) {
		// A panic ends the process, as it would on a goroutine of its own.
		panic(v)
	}))
	if err != nil {
		panic("reuse: " + err.Error()) // only for invalid options
	}
	return p
})

// Go runs f on a kept goroutine, or on a new one if the pool refuses.
func Go(f func()) {
	if pool().Submit(f) != nil {
		go f()
	}
}
