package service

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lkedge/lkedge/host/internal/testserver"
	"github.com/lkedge/lkedge/host/plugin/plugintest"
)

// TestBusyPluginRunsAtLowPriority: a plugin that spins through its time
// limit does so on a thread of nice 10, seen from outside in /proc, so the
// kernel prefers the accept path's threads when they compete for a core.
func TestBusyPluginRunsAtLowPriority(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("thread priority is lowered on Linux only")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "spin.wasm"), plugintest.Build(t, "../plugin/testdata/plugins/misbehave"), 0o644); err != nil {
		t.Fatal(err)
	}
	plugins := writePlugins(t, dir, `plugins:
  - name: spin
    wasm: spin.wasm
    events: ["*"]
    rooms: all
    config: {mode: loop}
    limits: {timeout: 3s}
`)
	p := testserver.StartLKEdge(t, map[string]string{
		"LKEDGE_DATA_DIR": dir, "LKEDGE_STORE": "file://" + dir, "LKEDGE_PLUGINS": plugins, "LKEDGE_LOG_LEVEL": "warn",
	})
	if code := post(t, p.URL, []byte(`{"event":"room_started","id":"EV_spin_1","room":{"name":"spin-room"}}`)); code != 200 {
		t.Fatalf("webhook answered %d", code)
	}
	// The busiest thread over half a second, once the call is running.
	deadline := time.Now().Add(10 * time.Second)
	for {
		before := threadTimes(t, p.PID())
		time.Sleep(500 * time.Millisecond)
		after := threadTimes(t, p.PID())
		busiest, most := 0, 0
		for tid, ticks := range after {
			if d := ticks.cpu - before[tid].cpu; d > most {
				busiest, most = tid, d
			}
		}
		// Clock ticks are 10 ms: a spinning thread gets most of 50.
		if most >= 25 {
			if nice := after[busiest].nice; nice != 10 {
				t.Fatalf("the thread spinning in the plugin (tid %d, %d ticks in 0.5 s) runs at nice %d, want 10", busiest, most, nice)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no thread of lkedge was busy while the plugin spun (most: %d ticks in 0.5 s)", most)
		}
	}
}

type threadStat struct{ cpu, nice int }

// threadTimes reads each thread's user+system clock ticks and nice value
// from /proc/PID/task/TID/stat.
func threadTimes(t *testing.T, pid int) map[int]threadStat {
	t.Helper()
	dirs, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]threadStat{}
	for _, d := range dirs {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, d.Name()))
		if err != nil {
			continue // the thread ended
		}
		st, err := parseStat(b)
		if err != nil {
			t.Fatal(err)
		}
		tid, _ := strconv.Atoi(d.Name())
		out[tid] = st
	}
	return out
}

// parseStat reads the user+system clock ticks and the nice value of a
// /proc stat line. The fields after the command name, which is in
// parentheses, start with the state: field 3; utime is 14, stime 15, nice 19.
func parseStat(b []byte) (threadStat, error) {
	_, rest, ok := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if !ok || len(f) < 17 {
		return threadStat{}, fmt.Errorf("unexpected stat line %q", b)
	}
	utime, _ := strconv.Atoi(f[11])
	stime, _ := strconv.Atoi(f[12])
	nice, _ := strconv.Atoi(f[16])
	return threadStat{cpu: utime + stime, nice: nice}, nil
}

// processTicks is a process's user+system CPU in clock ticks (0 when it
// cannot be read: the process is gone).
func processTicks(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	st, err := parseStat(b)
	if err != nil {
		return 0
	}
	return st.cpu
}
