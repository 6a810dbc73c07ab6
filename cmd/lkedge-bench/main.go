// Command lkedge-bench measures lkedge's accept path (verify, normalize,
// durable record, 200) against a baseline in the same run: a net/http server
// that uses livekit/protocol's webhook.ReceiveWebhookEvent and answers 200.
// Two more servers show what the accept path cannot go below: fasthttp
// answering 200 without looking at the request, and fasthttp with lkedge's
// verification and normalization but no durable record and no processing.
//
// Each server runs alone on CPU 0 (taskset, GOMAXPROCS=1); run this command
// on CPU 1 (`make bench` does), so the numbers are per server core. It sends
// properly signed webhooks, a mix of egress, participant, track and room
// events with unique ids, in a closed loop and at fixed rates, and prints
// events/s, latency percentiles, CPU per event and peak RSS.
//
//	lkedge-bench [--lkedge bin/lkedge] [--duration 5s] [--conns 64] [--rates 1000,2000]
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/webhook"
	"github.com/valyala/fasthttp"

	"github.com/lkedge/lkedge/host/event"
	lkwebhook "github.com/lkedge/lkedge/host/webhook"
)

const key, secret = "devkey", "secret"

func main() {
	if len(os.Args) > 2 {
		if serve, ok := references[os.Args[1]]; ok {
			if err := serve(os.Args[2]); err != nil {
				fmt.Fprintln(os.Stderr, os.Args[1]+":", err)
				os.Exit(1)
			}
			return
		}
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "lkedge-bench:", err)
		os.Exit(1)
	}
}

// baseline is the reference receiver: net/http plus ReceiveWebhookEvent.
func baseline(addr string) error {
	provider := auth.NewSimpleKeyProvider(key, secret)
	return http.ListenAndServe(addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			return
		}
		if _, err := webhook.ReceiveWebhookEvent(r, provider); err != nil {
			w.WriteHeader(http.StatusUnauthorized)
		}
	}))
}

// references are the servers lkedge is measured against, each run as
// `lkedge-bench NAME ADDR`.
var references = map[string]func(addr string) error{
	"baseline": baseline,
	"floor":    floor,
	"verify":   verifyOnly,
}

// floor answers 200 to every request without reading it: what fasthttp,
// lkedge's HTTP server, costs per request on this machine.
func floor(addr string) error {
	return fasthttp.ListenAndServe(addr, func(*fasthttp.RequestCtx) {})
}

// verifyOnly verifies and normalizes each webhook as lkedge's ingest does,
// then answers 200: lkedge's accept path without the durable record and
// without processing.
func verifyOnly(addr string) error {
	v := lkwebhook.NewVerifier(auth.NewSimpleKeyProvider(key, secret), 0, time.Now)
	return fasthttp.ListenAndServe(addr, func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Path()) == "/healthz" {
			return
		}
		body := ctx.PostBody()
		if _, err := v.Verify(string(ctx.Request.Header.Peek(fasthttp.HeaderAuthorization)), body); err != nil {
			ctx.SetStatusCode(fasthttp.StatusUnauthorized)
			return
		}
		if _, err := event.FromWebhook(body, time.Now()); err != nil {
			ctx.SetStatusCode(fasthttp.StatusBadRequest)
		}
	})
}

type server struct {
	name string
	cmd  *exec.Cmd
	url  string
	// reuse lets the closed loop send a pre-signed request again: only
	// lkedge recognizes duplicates, and the floor outruns the generator's
	// supply of signed requests.
	reuse bool
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// start runs argv on CPU 0 with GOMAXPROCS=1 and waits for /healthz, up
// to 30 s: a first start compiles the plugins, about 3 s each on one core.
func start(name string, argv []string, env []string, addr string) (*server, error) {
	return startOn("0", name, argv, env, addr)
}

// startOn starts a server pinned to the given CPU with GOMAXPROCS=1.
func startOn(cpu, name string, argv []string, env []string, addr string) (*server, error) {
	cmd := exec.Command("taskset", append([]string{"-c", cpu}, argv...)...)
	cmd.Env = append(os.Environ(), append(env, "GOMAXPROCS=1")...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	s := &server{name: name, cmd: cmd, url: "http://" + addr, reuse: !strings.HasPrefix(name, "lkedge")}
	for i := 0; i < 300; i++ {
		if res, err := http.Get(s.url + "/healthz"); err == nil {
			res.Body.Close()
			return s, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.stop()
	return nil, fmt.Errorf("%s did not start", name)
}

func (s *server) stop() {
	_ = s.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
}

// cpu is the process's user+system CPU time so far.
func (s *server) cpu() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond, nil // USER_HZ is 100 on Linux
}

// switches is how many times the server's threads have left the CPU so far,
// voluntarily (to sleep or wait) or not (preempted), summed over
// /proc/PID/task. Each costs a kernel round trip and a cold cache; the
// Go runtime's monitor thread polling every 20 µs after a wake-up is among
// them, and a steady rate pays far more of them per event than a burst.
func (s *server) switches() (int64, error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", s.cmd.Process.Pid))
	if err != nil {
		return 0, fmt.Errorf("threads of %d: %w", s.cmd.Process.Pid, err)
	}
	if len(tasks) == 0 {
		return 0, fmt.Errorf("no threads of %d under /proc: it has ended", s.cmd.Process.Pid)
	}
	var n int64
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue // a thread that ended meanwhile
		}
		for line := range strings.Lines(string(b)) {
			if name, v, ok := strings.Cut(line, ":"); ok && strings.HasSuffix(name, "ctxt_switches") {
				c, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				n += c
			}
		}
	}
	return n, nil
}

// peakRSS is the process's high-water resident set, in MiB.
func (s *server) peakRSS() float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 64)
			return kb / 1024
		}
	}
	return 0
}

// drain waits until the server has processed what it accepted and sent
// what its plugins asked for (lkedge's backlog and outbox gauges are 0), so one phase's background work does not bill the
// next. A server without lkedge's metrics (the references) has nothing to drain.
func (s *server) drain() {
	for i := 0; i < 600; i++ {
		res, err := http.Get(s.url + "/metrics")
		if err != nil {
			return
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK || !bytes.Contains(b, []byte("\nlkedge_backlog_events ")) ||
			(bytes.Contains(b, []byte("\nlkedge_backlog_events 0\n")) && bytes.Contains(b, []byte("\nlkedge_outbox_pending 0\n"))) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// request is one pre-signed webhook.
type request struct{ body, auth []byte }

var seq atomic.Int64

// mix returns n signed webhooks of a realistic mix, each with a unique id.
func mix(n int) ([]request, error) {
	out := make([]request, n)
	now := time.Now()
	for i := range out {
		id := seq.Add(1)
		room := fmt.Sprintf("bench-room-%d", id%500)
		var body string
		switch id % 20 {
		case 0, 1, 2, 3, 4, 5, 6, 7: // 40 %: egress updates of a file recording
			body = fmt.Sprintf(`{"event":"egress_updated","id":"EV_b%d","createdAt":"%d","egressInfo":{"egressId":"EG_b%d","roomId":"RM_%d","roomName":"%s","status":"EGRESS_ACTIVE","startedAt":"1745318182123456789","updatedAt":"1745318182200000000","roomComposite":{"roomName":"%s","layout":"speaker","fileOutputs":[{"filepath":"openvidu-meet/recordings/%s/%s--a1b2c3d4e5","disableManifest":true}]},"fileResults":[{"filename":"openvidu-meet/recordings/%s/%s--a1b2c3d4e5.mp4","startedAt":"1745318182123456789"}]}}`,
				id, now.Unix(), id%500, id%500, room, room, room, room, room, room)
		case 8, 9, 10, 11: // 20 %: joins
			body = fmt.Sprintf(`{"event":"participant_joined","id":"EV_b%d","createdAt":"%d","room":{"sid":"RM_%d","name":"%s","emptyTimeout":300,"creationTime":"1745318100","turnPassword":"p2ETYwVtBnQmUAK73gnrT2YLw4pcfwEn7R7DPFFeG6L"},"participant":{"sid":"PA_%d","identity":"user-%d","state":"ACTIVE","joinedAt":"%d","permission":{"canSubscribe":true,"canPublish":true,"canPublishData":true}}}`,
				id, now.Unix(), id%500, room, id, id, now.Unix())
		case 12, 13, 14, 15: // 20 %: leaves
			body = fmt.Sprintf(`{"event":"participant_left","id":"EV_b%d","createdAt":"%d","room":{"sid":"RM_%d","name":"%s"},"participant":{"sid":"PA_%d","identity":"user-%d","state":"DISCONNECTED"}}`,
				id, now.Unix(), id%500, room, id, id)
		case 16, 17: // 10 %: tracks
			body = fmt.Sprintf(`{"event":"track_published","id":"EV_b%d","createdAt":"%d","room":{"sid":"RM_%d","name":"%s"},"participant":{"sid":"PA_%d","identity":"user-%d"},"track":{"sid":"TR_%d","type":"VIDEO","source":"CAMERA","width":1280,"height":720,"mimeType":"video/VP8"}}`,
				id, now.Unix(), id%500, room, id, id, id)
		case 18:
			body = fmt.Sprintf(`{"event":"room_started","id":"EV_b%d","createdAt":"%d","room":{"sid":"RM_%d","name":"%s","emptyTimeout":300,"creationTime":"%d"}}`, id, now.Unix(), id%500, room, now.Unix())
		default:
			body = fmt.Sprintf(`{"event":"room_finished","id":"EV_b%d","createdAt":"%d","room":{"sid":"RM_%d","name":"%s"}}`, id, now.Unix(), id%500, room)
		}
		tok, err := lkwebhook.Sign([]byte(body), key, secret, now)
		if err != nil {
			return nil, err
		}
		out[i] = request{body: []byte(body), auth: []byte(tok)}
	}
	return out, nil
}

// result is one measured phase.
type result struct {
	sent, ok    int
	elapsed     time.Duration
	lat         []time.Duration
	cpuPerEvent time.Duration
}

func (r result) pct(p float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	return r.lat[min(len(r.lat)-1, int(float64(len(r.lat))*p))]
}

func post(c *fasthttp.HostClient, url string, r request) bool {
	req, res := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(res)
	req.SetRequestURI(url + "/livekit/webhook")
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/webhook+json")
	req.Header.SetBytesV("Authorization", r.auth)
	req.SetBodyRaw(r.body)
	return c.DoTimeout(req, res, 10*time.Second) == nil && res.StatusCode() == fasthttp.StatusOK
}

func client(url string, conns int) *fasthttp.HostClient {
	return &fasthttp.HostClient{Addr: strings.TrimPrefix(url, "http://"), MaxConns: conns}
}

// closedLoop keeps conns requests in flight for d.
func closedLoop(s *server, reqs []request, conns int, d time.Duration) (result, error) {
	c := client(s.url, conns)
	var next atomic.Int64
	var mu sync.Mutex
	res := result{}
	cpu0, err := s.cpu()
	if err != nil {
		return res, err
	}
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for range conns {
		wg.Go(func() {
			var lat []time.Duration
			ok := 0
			for time.Now().Before(deadline) {
				i := int(next.Add(1) - 1)
				if i >= len(reqs) {
					if !s.reuse {
						break
					}
					i %= len(reqs)
				}
				t0 := time.Now()
				if post(c, s.url, reqs[i]) {
					ok++
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			res.lat = append(res.lat, lat...)
			res.ok += ok
			mu.Unlock()
		})
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	res.sent = len(res.lat)
	// The work the phase's events caused is billed to it: processing and
	// deliveries still queued when the load stops run before the CPU is read.
	s.drain()
	cpu1, err := s.cpu()
	if err != nil {
		return res, err
	}
	if res.sent >= len(reqs) && !s.reuse {
		return res, errors.New("ran out of pre-signed requests: raise --max-rate")
	}
	res.cpuPerEvent = (cpu1 - cpu0) / time.Duration(max(res.ok, 1))
	slices.Sort(res.lat)
	return res, nil
}

// openLoop sends rate requests per second for d; latency is measured from
// each request's scheduled time, so a stalled server is not hidden
// (coordinated omission).
func openLoop(s *server, reqs []request, rate int, d time.Duration) (result, error) {
	const workers = 32
	c := client(s.url, workers)
	n := min(len(reqs), int(float64(rate)*d.Seconds()))
	interval := time.Second / time.Duration(rate)
	res := result{sent: n}
	cpu0, err := s.cpu()
	if err != nil {
		return res, err
	}
	start := time.Now()
	lat := make([]time.Duration, n)
	oks := make([]bool, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				at := start.Add(time.Duration(i) * interval)
				time.Sleep(time.Until(at))
				oks[i] = post(c, s.url, reqs[i])
				lat[i] = time.Since(at)
			}
		})
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	for _, ok := range oks {
		if ok {
			res.ok++
		}
	}
	// The work the phase's events caused is billed to it: processing and
	// deliveries still queued when the load stops run before the CPU is read.
	s.drain()
	cpu1, err := s.cpu()
	if err != nil {
		return res, err
	}
	res.cpuPerEvent = (cpu1 - cpu0) / time.Duration(max(res.ok, 1))
	res.lat = lat
	slices.Sort(res.lat)
	return res, nil
}

func run() error {
	lkedgeBin := flag.String("lkedge", "bin/lkedge", "the lkedge binary to measure")
	duration := flag.Duration("duration", 5*time.Second, "length of each phase")
	conns := flag.Int("conns", 64, "connections in the closed loop")
	ratesFlag := flag.String("rates", "1000,2000", "fixed rates (events/s) of the open-loop phases")
	maxRate := flag.Int("max-rate", 40000, "pre-signed requests per second of closed loop")
	versitygw := flag.String("versitygw", ".cache/bin/versitygw-v1.8.0", "the S3 server of the full-path phase")
	pluginWasm := flag.String("plugin", "plugins/openvidu-webhook.wasm", "the openvidu-webhook plugin of the full-path phase")
	fullRates := flag.String("full-rates", "200,500", "fixed rates (events/s) of the full-path open loops")
	fullPlugins := flag.String("full-plugins", "", "a plugins file with the three built-in plugins (plugins.yaml) for the full-path phase, each configured through its environment; empty runs openvidu-webhook alone")
	fullOnly := flag.Bool("full-only", false, "run only the full-path phase")
	pluginsFile := flag.String("plugins", "plugins.yaml", "the plugins file of the run with plugins (its modules built by make plugins)")
	only := flag.String("only", "", "run only the servers whose name contains this (\"full path\" names the full-path phase)")
	pairsN := flag.Int("pairs", 0, "instead of the phases: alternate this many pairs of closed loops between the baseline and lkedge with no plugins, both running (target 3)")
	admin := flag.String("admin", "127.0.0.1:0", "LKEDGE_ADMIN_LISTEN of the measured lkedge (e.g. to take a profile)")
	flag.Parse()
	var rates []int
	for _, r := range strings.Split(*ratesFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(r))
		if err != nil || n <= 0 {
			return fmt.Errorf("--rates: %q is not a rate", r)
		}
		rates = append(rates, n)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	dataDir, err := os.MkdirTemp("", "lkedge-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dataDir)
	deadLiveKit, err := freeAddr() // nothing listens: LiveKit calls fail fast
	if err != nil {
		return err
	}

	type spec struct {
		name string
		argv func(addr string) []string
		env  func(addr string) []string
	}
	noPlugins := filepath.Join(dataDir, "no-plugins.yaml")
	if err := os.WriteFile(noPlugins, []byte("plugins: []\n"), 0o644); err != nil {
		return err
	}
	shipped, err := filepath.Abs(*pluginsFile)
	if err != nil {
		return err
	}
	sk, err := startSink()
	if err != nil {
		return err
	}
	defer sk.srv.Shutdown()
	lkedgeEnv := func(plugins string, more ...string) func(string) []string {
		return func(addr string) []string {
			dir, _ := os.MkdirTemp(dataDir, "run-")
			return append([]string{"LKEDGE_LISTEN=" + addr, "LKEDGE_ADMIN_LISTEN=" + *admin, "LKEDGE_DATA_DIR=" + dir, "LKEDGE_STORE=file://" + filepath.Join(dir, "store"),
				"LKEDGE_LOG_LEVEL=error", "LIVEKIT_URL=http://" + deadLiveKit, "LKEDGE_PLUGINS=" + plugins}, more...)
		}
	}
	specs := []spec{
		{"baseline: net/http + ReceiveWebhookEvent", func(addr string) []string { return []string{self, "baseline", addr} }, func(string) []string { return nil }},
		{"floor: fasthttp answering 200", func(addr string) []string { return []string{self, "floor", addr} }, func(string) []string { return nil }},
		{"floor: fasthttp + lkedge's verify and normalize", func(addr string) []string { return []string{self, "verify", addr} }, func(string) []string { return nil }},
		{"lkedge, no plugins", func(string) []string { return []string{*lkedgeBin, "serve"} }, lkedgeEnv(noPlugins)},
		// The three built-in plugins of plugins.yaml; standard-webhooks is on
		// for every event and delivers to a local sink: a typical plugin's
		// whole cost, call and delivery, on the same core.
		{"lkedge, plugins.yaml (standard-webhooks on every event)", func(string) []string { return []string{*lkedgeBin, "serve"} }, lkedgeEnv(shipped,
			"LKEDGE_STANDARD_WEBHOOKS_URL=http://"+sk.addr+"/standard", "LKEDGE_STANDARD_WEBHOOKS_SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")},
	}
	if *fullOnly {
		specs = nil
	}
	specs = slices.DeleteFunc(specs, func(sp spec) bool { return !strings.Contains(sp.name, *only) })
	if *pairsN > 0 {
		var both []*server
		for _, sp := range specs {
			if !strings.HasPrefix(sp.name, "baseline") && sp.name != "lkedge, no plugins" {
				continue
			}
			addr, err := freeAddr()
			if err != nil {
				return err
			}
			s, err := start(sp.name, sp.argv(addr), sp.env(addr), addr)
			if err != nil {
				return err
			}
			defer s.stop()
			warm, err := mix(2000)
			if err != nil {
				return err
			}
			if _, err := closedLoop(s, warm, *conns, time.Second); err != nil && !strings.Contains(err.Error(), "ran out") {
				return err
			}
			both = append(both, s)
		}
		if len(both) != 2 {
			return errors.New("--pairs needs the baseline and lkedge with no plugins (check --only)")
		}
		return pairs(both[0], both[1], *pairsN, *conns, *duration, *maxRate)
	}
	if len(specs) > 0 {
		fmt.Printf("lkedge-bench: %s per phase, closed loop with %d connections, open loop at %v events/s\n", *duration, *conns, rates)
		fmt.Println("each server alone on CPU 0 with GOMAXPROCS=1; this generator on the other CPU")
		fmt.Println()
		fmt.Println("| server | phase | events/s | p50 | p99 | p99.9 | CPU/event | ok | peak RSS |")
		fmt.Println("|---|---|---|---|---|---|---|---|---|")
	}
	for _, sp := range specs {
		addr, err := freeAddr()
		if err != nil {
			return err
		}
		env := sp.env(addr)
		if strings.HasPrefix(sp.name, "lkedge") {
			// A first start compiles the plugins into DATA_DIR's cache, as
			// any deployment's first start does; the measured start is a
			// restart, so peak RSS is the service's, not the compiler's.
			s, err := start(sp.name, sp.argv(addr), env, addr)
			if err != nil {
				return err
			}
			s.stop()
		}
		s, err := start(sp.name, sp.argv(addr), env, addr)
		if err != nil {
			return err
		}
		warm, err := mix(2000)
		if err != nil {
			s.stop()
			return err
		}
		if _, err := closedLoop(s, warm, *conns, time.Second); err != nil && !strings.Contains(err.Error(), "ran out") {
			s.stop()
			return err
		}
		s.drain()
		reqs, err := mix(int(float64(*maxRate) * duration.Seconds()))
		if err != nil {
			s.stop()
			return err
		}
		r, err := closedLoop(s, reqs, *conns, *duration)
		if err != nil {
			s.stop()
			return err
		}
		row(sp.name, fmt.Sprintf("closed loop, %d conns", *conns), r, s.peakRSS())
		for _, rate := range rates {
			s.drain()
			reqs, err := mix(int(float64(rate) * duration.Seconds()))
			if err != nil {
				s.stop()
				return err
			}
			r, err := openLoop(s, reqs, rate, *duration)
			if err != nil {
				s.stop()
				return err
			}
			row(sp.name, fmt.Sprintf("open loop, %d/s", rate), r, s.peakRSS())
		}
		s.stop()
	}
	if !strings.Contains("full path", *only) {
		return nil
	}
	var frates []int
	for _, r := range strings.Split(*fullRates, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(r))
		if err != nil || n <= 0 {
			return fmt.Errorf("--full-rates: %q is not a rate", r)
		}
		frates = append(frates, n)
	}
	return fullPath(*lkedgeBin, *versitygw, *pluginWasm, *fullPlugins, *duration, *conns, frates)
}

func row(name, phase string, r result, rss float64) {
	fmt.Printf("| %s | %s | %.0f | %s | %s | %s | %s | %d/%d | %.0f MiB |\n", name, phase,
		float64(r.ok)/r.elapsed.Seconds(), round(r.pct(0.50)), round(r.pct(0.99)), round(r.pct(0.999)),
		round(r.cpuPerEvent), r.ok, r.sent, rss)
}

func round(d time.Duration) string {
	switch {
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
	}
}
