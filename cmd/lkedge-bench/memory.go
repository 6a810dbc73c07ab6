package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// idleSettle is how long the process is left alone before its idle
// memory is read: long enough for the Go scavenger to return most of
// what the start-up freed.
const idleSettle = 10 * time.Second

// memSample is what makes up the process's resident set at one moment:
// /proc/PID/smaps_rollup splits it into anonymous and file-backed pages,
// and the Go runtime's own gauges (its /metrics) split the anonymous part
// into the live heap, the heap freed but not yet returned, and the rest.
type memSample struct {
	rss, anon, file float64 // MiB
	// Go heap in use (live and not yet collected), heap idle and not yet
	// returned to the system, goroutine stacks.
	heapInuse, heapRetained, stacks float64 // MiB
}

func (m memSample) String() string {
	if m.rss == 0 {
		return "(not measured)"
	}
	outside := m.anon - m.heapInuse - m.heapRetained - m.stacks
	return fmt.Sprintf("RSS %.0f MiB = anonymous %.0f (Go heap in use %.0f, heap freed not returned %.0f, stacks %.0f, other anonymous outside the heap %.0f) + file-backed %.0f",
		m.rss, m.anon, m.heapInuse, m.heapRetained, m.stacks, outside, m.file)
}

// memWatch samples a server's memory every 100 ms and keeps the sample
// of highest RSS, since the kernel's high-water mark (VmHWM) says how
// much but not of what.
type memWatch struct {
	s    *server
	mu   sync.Mutex
	top  memSample
	done chan struct{}
}

func watchMemory(s *server) *memWatch {
	w := &memWatch{s: s, done: make(chan struct{})}
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-w.done:
				return
			case <-t.C:
				// /metrics only at a new peak: polled every 100 ms, it
				// would itself keep the service from ever being quiet.
				rss := w.rss()
				w.mu.Lock()
				top := w.top.rss
				w.mu.Unlock()
				if rss < top+1 {
					continue
				}
				m := w.now()
				w.mu.Lock()
				if m.rss > w.top.rss {
					w.top = m
				}
				w.mu.Unlock()
			}
		}
	}()
	return w
}

func (w *memWatch) stop() { close(w.done) }

func (w *memWatch) peak() memSample {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.top
}

// rss is the process's resident set now, in MiB.
func (w *memWatch) rss() float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", w.s.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	return fieldsKB(b)["Rss"] / 1024
}

// now reads one sample; a field it cannot read stays 0.
func (w *memWatch) now() memSample {
	var m memSample
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", w.s.cmd.Process.Pid)); err == nil {
		kb := fieldsKB(b)
		m.rss = kb["Rss"] / 1024
		m.anon = kb["Anonymous"] / 1024
		m.file = m.rss - m.anon
	}
	res, err := http.Get(w.s.url + "/metrics")
	if err != nil {
		return m
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	g := gauges(b)
	const mib = 1 << 20
	m.heapInuse = g["go_memstats_heap_inuse_bytes"] / mib
	m.heapRetained = (g["go_memstats_heap_idle_bytes"] - g["go_memstats_heap_released_bytes"]) / mib
	m.stacks = g["go_memstats_stack_inuse_bytes"] / mib
	return m
}

// fieldsKB parses "Name:   123 kB" lines.
func fieldsKB(b []byte) map[string]float64 {
	out := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 2 && f[1] == "kB" {
			if v, err := strconv.ParseFloat(f[0], 64); err == nil {
				out[name] = v
			}
		}
	}
	return out
}

// gauges parses the unlabelled samples of a Prometheus text exposition.
func gauges(b []byte) map[string]float64 {
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") || strings.Contains(name, "{") {
			continue
		}
		if v, err := strconv.ParseFloat(val, 64); err == nil {
			out[name] = v
		}
	}
	return out
}
