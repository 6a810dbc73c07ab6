package proccpu

import (
	"os"
	"testing"
	"time"
)

// TestOf: another process's CPU time, read from /proc, agrees with what the
// process itself measures (here the test process reads itself both ways).
func TestOf(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	for start := time.Now(); time.Since(start) < 200*time.Millisecond; {
	}
	self := Used()
	got, err := Of(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Clock ticks are 10 ms; the two readings are moments apart.
	if d := got - self; d < -30*time.Millisecond || d > 30*time.Millisecond {
		t.Errorf("Of(self) = %s, Used() = %s", got, self)
	}
	if _, err := Of(-1); err == nil {
		t.Error("Of(-1) did not fail")
	}
}
