package service

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// processTicks is a process's user+system CPU in clock ticks (1/100 s) from
// /proc/PID/stat, or 0 when it cannot be read (the process is gone). The
// fields after the command name, which is in parentheses, start with the
// state, field 3; utime is field 14, stime 15.
func processTicks(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	_, rest, ok := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if !ok || len(f) < 13 {
		return 0
	}
	utime, _ := strconv.Atoi(f[11])
	stime, _ := strconv.Atoi(f[12])
	return utime + stime
}
