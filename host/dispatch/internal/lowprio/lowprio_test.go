package lowprio

import (
	"runtime"
	"sync"
	"testing"
)

func TestDoRunsInIdleClass(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the idle class exists on Linux only")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	p := New()
	for i := range 3 { // a new worker, then an idle one reused
		var idle bool
		var err error
		p.Do(func() { idle, err = idleClass() })
		if err != nil || !idle {
			t.Fatalf("call %d: fn ran outside the idle class (%v)", i, err)
		}
	}
	if idle, _ := idleClass(); idle {
		t.Error("the caller's thread went into the idle class")
	}
}

func TestDoRunsConcurrently(t *testing.T) {
	p := New()
	const n = 4
	var started, release sync.WaitGroup
	started.Add(n)
	release.Add(1)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			p.Do(func() {
				started.Done()
				release.Wait() // all n must be running at once to get past this
			})
		})
	}
	started.Wait()
	release.Done()
	wg.Wait()
}
