// Package proccpu reads the CPU time the process has used, for benchmarks
// that report CPU per operation next to wall time: on these shared 2-core
// machines CPU time is what stays comparable between runs.
package proccpu

import (
	"syscall"
	"time"
)

// Used returns the process's user plus system CPU time so far.
func Used() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
