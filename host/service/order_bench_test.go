package service

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lkedge/lkedge/host/internal/proccpu"
	"github.com/lkedge/lkedge/host/internal/testserver"
)

// BenchmarkReplicasTimeToNotify is the time from a replica's 200 to OpenVidu
// Meet's webhook at the application, across three replicas on one Consul
// and S3, fed at a fixed rate by a LiveKit-like sender that picks a replica
// at random for every webhook (so most of a room's consecutive events land
// on different replicas and wait for each other's turns). Rooms run
// recording lifecycles; the rate is LKEDGE_BENCH_RATE events/s (default
// 200) for LKEDGE_BENCH_WARMUP seconds (default 2) and then
// LKEDGE_BENCH_SECONDS (default 10), over LKEDGE_BENCH_REPLICAS replicas
// (default 3; 1 shows what Consul coordination costs one process).
//
// It reports p50 and p99 in ms of the webhooks answered after the warm-up,
// and the CPU used meanwhile: the steady state. The warm-up is measured
// apart (cold-p99-ms): it holds the start of a cluster just made (every
// cache empty, a Consul and an S3 server that have just started) and every
// room's first recording starting at once, the heaviest event, 100 of them
// in half a second. With LKEDGE_BENCH_LATENCIES set to a path, it also
// writes one line per webhook there, so that runs can be pooled and a slow
// stretch placed in time: when the sender had its 200 (ms since the load
// began), the time to the application (ms), and the idempotency key.
//
//	go test -run '^$' -bench ReplicasTimeToNotify -benchtime 1x ./host/service
func BenchmarkReplicasTimeToNotify(b *testing.B) {
	rate, seconds := envInt("LKEDGE_BENCH_RATE", 200), envInt("LKEDGE_BENCH_SECONDS", 10)
	warmup := time.Duration(envInt("LKEDGE_BENCH_WARMUP", 2)) * time.Second
	c := newCluster(b)
	app := newMeetSink(b, "bench-secret")
	c.env["LKEDGE_PLUGINS"] = meetWebhookPlugin(b, b.TempDir(), app.srv.URL, "ORDER_TEST_MEET_KEY", "{backoff: 300ms}")
	c.env["ORDER_TEST_MEET_KEY"] = "bench-secret"
	c.env["LKEDGE_LOG_LEVEL"] = "warn"
	var reps []*testserver.LKEdgeProcess
	for i := range envInt("LKEDGE_BENCH_REPLICAS", 3) {
		reps = append(reps, c.replica(b, string(rune('a'+i))))
	}
	const rooms = 100
	putRooms(b, c.s3, "lat", rooms)
	sender := &liveKitSender{reps: reps, client: &http.Client{Timeout: 10 * time.Second}, rng: rand.New(rand.NewPCG(200, 3))}
	var mu sync.Mutex
	answered := map[string]time.Time{}
	var pids []int
	for _, r := range reps {
		pids = append(pids, r.PID())
	}
	groups := map[string][]int{
		"replicas": pids,
		"consul":   {c.consul.PID()}, "s3": {c.gw.PID()}, "harness": {os.Getpid()},
	}
	var began, measured time.Time
	var cpu *cpuShares
	for b.Loop() {
		tick := time.NewTicker(time.Second / time.Duration(rate))
		tokens := make(chan struct{}, rate)
		go func() {
			for range tick.C {
				select {
				case tokens <- struct{}{}:
				default:
				}
			}
		}()
		began = time.Now()
		measured = began.Add(warmup)
		stop := measured.Add(time.Duration(seconds) * time.Second)
		var wg sync.WaitGroup
		for r := range rooms {
			wg.Go(func() {
				room := fmt.Sprintf("lat-%d", r)
				for rec := 0; time.Now().Before(stop); rec++ {
					for step := range recordingSteps {
						<-tokens
						body, id, _ := orderedStep(room, rec, step)
						if !sender.send(body, time.Now().Add(30*time.Second)) {
							b.Errorf("%s never answered", id)
							return
						}
						mu.Lock()
						answered[id+"/openvidu-webhook/0"] = time.Now()
						mu.Unlock()
					}
				}
			})
		}
		time.Sleep(time.Until(measured))
		cpu = newCPUShares(groups)
		profile(b, reps, seconds)
		wg.Wait()
		tick.Stop()
	}
	cpu.report(b)
	deadline := time.Now().Add(60 * time.Second)
	var lat, cold []time.Duration
	for {
		lat, cold = lat[:0], cold[:0]
		got := firstArrivals(app.hooks())
		for key, at := range answered {
			if arrived, ok := got[key]; ok {
				if at.Before(measured) {
					cold = append(cold, max(0, arrived.Sub(at)))
				} else {
					lat = append(lat, max(0, arrived.Sub(at)))
				}
			}
		}
		if len(lat)+len(cold) == len(answered) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := len(lat) + len(cold); n != len(answered) {
		b.Fatalf("%d of %d webhooks reached the application", n, len(answered))
	}
	if path := os.Getenv("LKEDGE_BENCH_LATENCIES"); path != "" {
		writeLatencies(b, path, began, answered, app.hooks())
	}
	b.ReportMetric(percentile(lat, 0.50), "p50-ms")
	b.ReportMetric(percentile(lat, 0.99), "p99-ms")
	b.ReportMetric(percentile(cold, 0.99), "cold-p99-ms")
	b.ReportMetric(float64(len(lat))/float64(seconds), "events/s")
	reportStages(b, reps)
}

// profile writes a CPU profile of each process, taken over the middle of
// a run of the given seconds, to LKEDGE_BENCH_PROFILE-<index>.pprof when
// that variable names a path prefix: where its CPU goes under the load
// (with LKEDGE_BENCH_PROFILE_KIND=allocs, what it allocates instead; with
// trace, an execution trace).
func profile(b *testing.B, reps []*testserver.LKEdgeProcess, seconds int) {
	prefix := os.Getenv("LKEDGE_BENCH_PROFILE")
	if prefix == "" || seconds < 4 {
		return
	}
	time.Sleep(time.Second)
	var wg sync.WaitGroup
	for i, r := range reps {
		wg.Go(func() {
			kind := "profile"
			if k := os.Getenv("LKEDGE_BENCH_PROFILE_KIND"); k == "allocs" || k == "trace" {
				kind = k
			}
			res, err := http.Get(fmt.Sprintf("%s/debug/pprof/%s?seconds=%d", r.AdminURL, kind, seconds-3))
			if err != nil {
				b.Errorf("profile replica %d: %v", i, err)
				return
			}
			defer res.Body.Close()
			body, err := io.ReadAll(res.Body)
			if err == nil {
				err = os.WriteFile(fmt.Sprintf("%s-%d.pprof", prefix, i), body, 0o644)
			}
			if err != nil {
				b.Errorf("profile replica %d: %v", i, err)
			}
		})
	}
	wg.Wait()
}

// cpuShares measures the CPU that groups of processes use over a run, in
// percent of one core, so that a missed latency says whether the machine
// had CPU to spare.
type cpuShares struct {
	start  time.Time
	groups map[string][]int
	used   map[string]time.Duration
}

func newCPUShares(groups map[string][]int) *cpuShares {
	c := &cpuShares{start: time.Now(), groups: groups, used: map[string]time.Duration{}}
	for name, pids := range groups {
		c.used[name] = groupCPU(pids)
	}
	return c
}

// report adds a cpu-<group>-% metric per group.
func (c *cpuShares) report(b *testing.B) {
	wall := time.Since(c.start)
	for name, pids := range c.groups {
		b.ReportMetric(100*float64(groupCPU(pids)-c.used[name])/float64(wall), "cpu-"+name+"-%")
	}
}

// groupCPU is the CPU time the processes have used so far; a process that
// is gone counts nothing.
func groupCPU(pids []int) time.Duration {
	var sum time.Duration
	for _, pid := range pids {
		d, _ := proccpu.Of(pid)
		sum += d
	}
	return sum
}

// reportStages reports the mean time per event of each processing stage
// (lkedge_process_seconds), summed over the replicas, so that a missed
// latency says where the time went, and how often the Meet logic's
// remembered recording state saved a store read (rec-cache-hit-%): only
// when the recording's previous event was handled by the same replica.
func reportStages(b *testing.B, reps []*testserver.LKEdgeProcess) {
	sum, count := map[string]float64{}, map[string]float64{}
	var hits, lookups float64
	for _, r := range reps {
		res, err := http.Get(r.URL + "/metrics")
		if err != nil {
			b.Fatalf("scrape %s: %v", r.URL, err)
		}
		body, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil {
			b.Fatalf("scrape %s: %v", r.URL, err)
		}
		for line := range strings.Lines(string(body)) {
			if rest, ok := strings.CutPrefix(line, `lkedge_meet_cache_total{cache="recording",result="`); ok {
				result, value, _ := strings.Cut(rest, `"} `)
				if v, err := strconv.ParseFloat(strings.TrimSpace(value), 64); err == nil {
					lookups += v
					if result == "hit" {
						hits += v
					}
				}
				continue
			}
			name, rest, ok := strings.Cut(line, `{stage="`)
			if !ok {
				continue
			}
			stage, value, _ := strings.Cut(rest, `"} `)
			v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
			if err != nil {
				continue
			}
			switch name {
			case "lkedge_process_seconds_sum":
				sum[stage] += v
			case "lkedge_process_seconds_count":
				count[stage] += v
			}
		}
	}
	for stage, n := range count {
		if n > 0 {
			b.ReportMetric(sum[stage]/n*1000, stage+"-ms")
		}
	}
	if lookups > 0 {
		b.ReportMetric(100*hits/lookups, "rec-cache-hit-%")
	}
}

// envInt reads a positive integer setting of a benchmark, or def.
func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// writeLatencies writes, for each answered webhook, the ms from start to its
// 200, the ms from the 200 to its first arrival at the application, and its
// idempotency key, in the order of the 200s.
func writeLatencies(b *testing.B, path string, start time.Time, answered map[string]time.Time, hooks []meetHook) {
	first := firstArrivals(hooks)
	keys := make([]string, 0, len(answered))
	for k := range answered {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(x, y string) int { return answered[x].Compare(answered[y]) })
	var out strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&out, "%d %d %s\n", answered[k].Sub(start).Milliseconds(), first[k].Sub(answered[k]).Milliseconds(), k)
	}
	if err := os.WriteFile(path, []byte(out.String()), 0o644); err != nil {
		b.Errorf("latencies: %v", err)
	}
}

// firstArrivals maps each idempotency key to when the application first
// received it.
func firstArrivals(hooks []meetHook) map[string]time.Time {
	first := map[string]time.Time{}
	for _, h := range hooks {
		if _, ok := first[h.key]; !ok {
			first[h.key] = h.at
		}
	}
	return first
}

// percentile is the p-th percentile of d in ms (0 for none); it sorts d.
func percentile(d []time.Duration, p float64) float64 {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return float64(d[int(p*float64(len(d)-1))].Microseconds()) / 1000
}
