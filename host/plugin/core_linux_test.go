package plugin

import (
	"context"
	"errors"
	"runtime"
	"syscall"
	"testing"
	"time"

	. "github.com/lkedge/lkedge/host/plugin/internal/wasmtest"
)

// TestLongCallLeavesItsCore: a guest that spins to its time limit used to
// hold its thread's core for the whole limit, and a host thread that woke
// meanwhile (one with a webhook to answer) waited for the kernel's next
// time slice. A call past runStretch now sleeps between stretches: its
// thread uses about a fifth of the call's wall time, and the call still ends
// at its limit.
func TestLongCallLeavesItsCore(t *testing.T) {
	ctx := context.Background()
	const limit = 300 * time.Millisecond
	p, err := Load(ctx, crafted{memPages: 1, onEvent: [][]byte{spin, I32Const(0)}}.wasm(), Options{Name: "spinner", Limits: Limits{Timeout: limit}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(ctx)
	event := readEvent(t)
	// The guest runs on the calling goroutine; locked to its thread, the
	// thread's CPU time is the call's.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cpu := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru); err != nil {
			t.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	cpu0, start := cpu(), time.Now()
	_, err = p.Call(ctx, event, nil)
	wall, used := time.Since(start), cpu()-cpu0
	var ce *CallError
	if !errors.As(err, &ce) || ce.Kind != KindTimeout {
		t.Fatalf("Call = %v, want a timeout", err)
	}
	t.Logf("call of %s used %s of CPU (%.0f %%)", wall, used, 100*used.Seconds()/wall.Seconds())
	if wall < limit || wall > limit+100*time.Millisecond {
		t.Errorf("call stopped after %s, limit %s", wall, limit)
	}
	if used > wall*7/10 {
		t.Errorf("the spinning call used %s of CPU in %s: it held its core", used, wall)
	}
}
