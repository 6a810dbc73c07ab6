package reuse

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

func TestGoRunsEveryFunction(t *testing.T) {
	for _, n := range []int{1, 100, 5000} {
		var ran atomic.Int64
		var wg sync.WaitGroup
		wg.Add(n)
		for range n {
			Go(func() {
				defer wg.Done()
				ran.Add(1)
			})
		}
		wg.Wait()
		if got := ran.Load(); got != int64(n) {
			t.Errorf("%d functions given, %d ran", n, got)
		}
	}
}

// TestGoKeepsBlockedWork checks that work waiting on other work does not
// hold the pool up: the pool has no bound, as its callers keep their own.
func TestGoKeepsBlockedWork(t *testing.T) {
	const n = 200
	release := make(chan struct{})
	var started, finished sync.WaitGroup
	started.Add(n)
	finished.Add(n)
	for range n {
		Go(func() {
			defer finished.Done()
			started.Done()
			<-release
		})
	}
	started.Wait() // all n run at once, or this never returns
	close(release)
	finished.Wait()
}

// TestPanicEndsTheProcess runs itself in a child process whose work
// panics: the process must die of it, as with a goroutine of its own,
// and not go on with the panic logged (the pool's default).
func TestPanicEndsTheProcess(t *testing.T) {
	if os.Getenv("REUSE_PANIC_CHILD") == "1" {
		done := make(chan struct{})
		Go(func() {
			defer close(done)
			panic("reuse-test-boom")
		})
		<-done
		select {} // the panic must end the process before the test does
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestPanicEndsTheProcess$", "-test.timeout=20s")
	cmd.Env = append(os.Environ(), "REUSE_PANIC_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("child exited cleanly after a panic:\n%s", out)
	}
	// The runtime's own report starts a line; a pool that logged the panic
	// and went on would leave the child to the test's timeout.
	if !regexp.MustCompile(`(?m)^panic: reuse-test-boom`).Match(out) || strings.Contains(string(out), "test timed out") {
		t.Fatalf("child did not die of the panic (err %v):\n%s", err, out)
	}
}

// grow uses about depth KiB of stack, as a deep call chain does.
//
//go:noinline
func grow(depth int) byte {
	var buf [1024]byte
	buf[depth%len(buf)] = byte(depth)
	if depth == 0 {
		return buf[0]
	}
	return grow(depth-1) + buf[depth%len(buf)]
}

var sink atomic.Int64

// BenchmarkGrowingWork compares a fresh goroutine with a kept one for work
// that needs 64 KiB of stack, as the Meet stage's S3 calls do.
func BenchmarkGrowingWork(b *testing.B) {
	for _, c := range []struct {
		name string
		run  func(func())
	}{
		{"go", func(f func()) { go f() }},
		{"reuse", Go},
	} {
		b.Run(c.name, func(b *testing.B) {
			done := make(chan struct{})
			for b.Loop() {
				c.run(func() {
					sink.Add(int64(grow(64)))
					done <- struct{}{}
				})
				<-done
			}
		})
	}
}
