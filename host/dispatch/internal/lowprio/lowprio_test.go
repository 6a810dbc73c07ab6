package lowprio

import (
	"runtime"
	"sync"
	"testing"
)

func TestDoRunsOnLoweredThread(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("thread priority is set on Linux only")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	before, err := threadNice()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ asked, want int }{{10, 10}, {25, 19}} {
		p := New(tc.asked)
		for range 3 { // a new worker, then an idle one reused
			var got int
			var gerr error
			p.Do(func() { got, gerr = threadNice() })
			if gerr != nil || got != max(tc.want, before) {
				t.Fatalf("New(%d): fn ran at nice %d (%v), want %d", tc.asked, got, gerr, max(tc.want, before))
			}
		}
	}
	if after, _ := threadNice(); after != before {
		t.Errorf("the caller's thread went from nice %d to %d", before, after)
	}
}

func TestDoRunsConcurrently(t *testing.T) {
	p := New(10)
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
