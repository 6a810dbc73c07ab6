package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	lkwebhook "github.com/lkedge/lkedge/host/webhook"
)

// The full path: Meet-owned egress_updated events go through lkedge's
// ownership check and recording metadata in S3 (versitygw), then the
// openvidu-webhook plugin, and out as signed webhooks to a local sink. The
// reference OpenVidu Meet backend does 196 events/s on this path on one
// core.
const (
	fullRooms    = 256
	meetAPIKey   = "bench-meet-api-key"
	s3Access     = "lkedgebench"
	s3Secret     = "lkedgebenchsecret123"
	fullSinkPath = "/meet-webhook"
)

// sink receives the outbound webhooks and checks their signature. It
// keeps each webhook's arrival by its Idempotency-Key
// (<event id>/openvidu-webhook/0), for the time to notify.
type sink struct {
	got, bad atomic.Int64
	mu       sync.Mutex
	last     time.Time
	arrived  map[string]time.Time
	srv      *fasthttp.Server
	addr     string
}

func startSink() (*sink, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	s := &sink{addr: addr, arrived: map[string]time.Time{}}
	s.srv = &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		mac := hmac.New(sha256.New, []byte(meetAPIKey))
		mac.Write(ctx.Request.Header.Peek("X-Timestamp"))
		mac.Write([]byte("."))
		mac.Write(ctx.PostBody())
		if hex.EncodeToString(mac.Sum(nil)) != string(ctx.Request.Header.Peek("X-Signature")) {
			s.bad.Add(1)
		}
		s.got.Add(1)
		now := time.Now()
		s.mu.Lock()
		s.last = now
		s.arrived[string(ctx.Request.Header.Peek("Idempotency-Key"))] = now
		s.mu.Unlock()
	}}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("sink: %w", err)
	}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

func (s *sink) lastAt() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

// notifyTimes returns, sorted, the time from each answered event's 200 to
// its webhook at the sink, for the events that arrived.
func (s *sink) notifyTimes(answered map[string]time.Time) []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []time.Duration
	for id, at := range answered {
		if got, ok := s.arrived[id+"/openvidu-webhook/0"]; ok {
			out = append(out, max(0, got.Sub(at)))
		}
	}
	slices.Sort(out)
	return out
}

// fullPath runs the full-path phase: a closed loop (unless
// --full-closed-loop=false), then each fixed rate.
// Each connection owns its rooms and sends their updates in order, as
// LiveKit's per-egress queues do, so every event is a fresh recording
// state that the plugin reports.
// adminAddr is where the full-path lkedge serves its operator API, so a
// profile can be taken while it runs (go tool pprof http://ADDR/debug/pprof/profile).
var adminAddr = flag.String("full-admin", "127.0.0.1:0", "LKEDGE_ADMIN_LISTEN of the full-path lkedge")

// fullClosedLoop turns the full path's closed loop off, so that the peak
// RSS is that of the fixed rates alone: the closed loop is an overload, in
// which the backlog grows to its bound.
var fullClosedLoop = flag.Bool("full-closed-loop", true, "run the full path's closed loop (an overload: the backlog grows to its bound) before the fixed rates")

func fullPath(lkedgeBin, versitygwBin, pluginWasm, shippedPlugins string, d time.Duration, conns int, rates []int) error {
	for _, f := range []string{versitygwBin, pluginWasm} {
		if _, err := os.Stat(f); err != nil {
			fmt.Printf("\nfull path skipped: %v (make servers plugins builds it)\n", err)
			return nil
		}
	}
	dir, err := os.MkdirTemp("", "lkedge-bench-full-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	s3dir := filepath.Join(dir, "s3")
	for r := range fullRooms {
		id := fmt.Sprintf("fp-%d", r)
		path := filepath.Join(s3dir, "openvidu", "openvidu-meet", "rooms", id, id+".json")
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, []byte(`{"roomId":"`+id+`"}`), 0o644); err != nil {
			return err
		}
	}
	s3addr, err := freeAddr()
	if err != nil {
		return err
	}
	// --keep-alive: versitygw closes every connection after one request
	// unless told otherwise, which S3 does not; without it each store call
	// pays a TCP connect on both sides.
	// The S3 server is another service: it runs on the load generator's
	// CPU, so that lkedge's core is lkedge's alone, as on a real node.
	gw, err := startOn("1", "versitygw", []string{versitygwBin, "--port", s3addr, "--access", s3Access, "--secret", s3Secret, "--quiet", "--keep-alive", "posix", s3dir}, nil, s3addr)
	if err != nil {
		return err
	}
	defer gw.stop()
	sk, err := startSink()
	if err != nil {
		return err
	}
	defer sk.srv.Shutdown()
	plugins := filepath.Join(dir, "plugins.yaml")
	wasm, err := filepath.Abs(pluginWasm)
	if err != nil {
		return err
	}
	conf := fmt.Sprintf(`plugins:
  - name: openvidu-webhook
    wasm: %s
    events: [egress_started, egress_updated, egress_ended]
    config: {url: "http://%s%s", enabled: "true"}
    secrets: {meet_api_key: {env: MEET_API_KEY}}
    allow: ["config:url"]
`, wasm, sk.addr, fullSinkPath)
	if err := os.WriteFile(plugins, []byte(conf), 0o644); err != nil {
		return err
	}
	dead, err := freeAddr()
	if err != nil {
		return err
	}
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	env := []string{
		"LKEDGE_LISTEN=" + addr, "LKEDGE_ADMIN_LISTEN=" + *adminAddr, "LKEDGE_DATA_DIR=" + filepath.Join(dir, "data"),
		"LKEDGE_STORE=s3", "MEET_S3_SERVICE_ENDPOINT=http://" + s3addr, "MEET_S3_ACCESS_KEY=" + s3Access, "MEET_S3_SECRET_KEY=" + s3Secret,
		"LKEDGE_PLUGINS=" + plugins, "MEET_API_KEY=" + meetAPIKey, "LKEDGE_LOG_LEVEL=error", "LIVEKIT_URL=http://" + dead,
	}
	if shippedPlugins != "" {
		// The three built-in plugins as an operator turns them on: Meet's
		// webhooks to the sink, Standard Webhooks on every event to a
		// second sink (its signatures are not Meet's), Slack configured
		// but, as egress_updated is not among its events, not called.
		other, err := startSink()
		if err != nil {
			return err
		}
		defer other.srv.Shutdown()
		shipped, err := filepath.Abs(shippedPlugins)
		if err != nil {
			return err
		}
		env[slices.Index(env, "LKEDGE_PLUGINS="+plugins)] = "LKEDGE_PLUGINS=" + shipped
		env = append(env,
			"MEET_WEBHOOK_URL=http://"+sk.addr+fullSinkPath, "MEET_WEBHOOK_ENABLED=true",
			"LKEDGE_STANDARD_WEBHOOKS_URL=http://"+other.addr+"/standard", "LKEDGE_STANDARD_WEBHOOKS_SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
			"LKEDGE_SLACK_WEBHOOK_URL=https://hooks.slack.com/services/T0/B0/bench")
	}
	// A first start compiles the plugins into the data directory's cache,
	// as a deployment's first start does, so the measured start is a
	// restart and peak RSS is the service's, not the compiler's.
	first, err := start("lkedge (full path, compiling)", []string{lkedgeBin, "serve"}, env, addr)
	if err != nil {
		return err
	}
	first.stop()
	lk, err := start("lkedge (full path)", []string{lkedgeBin, "serve"}, env, addr)
	if err != nil {
		return err
	}
	defer lk.stop()
	mem := watchMemory(lk)
	defer mem.stop()
	time.Sleep(idleSettle)
	idle := mem.now()

	fmt.Println()
	fmt.Println("Full path: Meet-owned egress_updated → S3 (versitygw) → openvidu-webhook plugin → signed webhook at a local sink.")
	fmt.Println("lkedge runs alone on CPU 0, versitygw beside the load generator on CPU 1 (GOMAXPROCS=1 each); events/s counts webhooks at the sink.")
	fmt.Println()
	fmt.Printf("idle after start: %s\n\n", idle)
	fmt.Println("Time to notify: from lkedge's 200 to the signed webhook at the sink.")
	fmt.Println()
	fmt.Println("| phase | accepted | end-to-end events/s | accept p50 | accept p99 | accept max | notify p50 | notify p99 | lkedge CPU/event | lkedge switches/event | versitygw CPU/event | bad signatures | peak RSS |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	var step atomic.Int64
	phase := func(name string, n, rate int) error {
		reqs := make([][]request, conns)
		ids := make([][]string, conns)
		// order[c][j] is the place of connection c's j-th request among all
		// n: at a fixed rate, requests leave one every 1/rate in that order,
		// evenly spaced as in the accept path's open loop, not all
		// connections at once.
		order := make([][]int, conns)
		for i := range n {
			r := i % fullRooms
			c := r % conns
			st := step.Add(1)
			room := fmt.Sprintf("fp-%d", r)
			body := fmt.Sprintf(`{"event":"egress_updated","id":"EV_fp%d","createdAt":"%d","egressInfo":{"egressId":"EG_fp%d","roomId":"RM_fp%d","roomName":"%s","status":"EGRESS_ACTIVE","startedAt":"1745318182123456789","updatedAt":"%d","fileResults":[{"filename":"openvidu-meet/recordings/%s/%s--a1b2c3d4e5.mp4","startedAt":"1745318182123456789"}]}}`,
				st, time.Now().Unix(), r, r, room, 1745318182200000000+st, room, room)
			tok, err := lkwebhook.Sign([]byte(body), key, secret, time.Now())
			if err != nil {
				return err
			}
			reqs[c] = append(reqs[c], request{body: []byte(body), auth: []byte(tok)})
			order[c] = append(order[c], i)
			ids[c] = append(ids[c], fmt.Sprintf("EV_fp%d", st))
		}
		got0 := sk.got.Load()
		lk0, _ := lk.cpu()
		sw0, _ := lk.switches()
		gw0, _ := gw.cpu()
		c := client(lk.url, conns)
		var lat []time.Duration
		answered := make(map[string]time.Time, n)
		var mu sync.Mutex
		var ok atomic.Int64
		start := time.Now()
		var interval time.Duration
		if rate > 0 {
			interval = time.Second / time.Duration(rate)
		}
		var wg sync.WaitGroup
		for ci := range conns {
			wg.Go(func() {
				var l []time.Duration
				okAt := make(map[string]time.Time, len(reqs[ci]))
				for i, r := range reqs[ci] {
					at := time.Now()
					if interval > 0 {
						at = start.Add(time.Duration(order[ci][i]) * interval)
						time.Sleep(time.Until(at))
					}
					if post(c, lk.url, r) {
						ok.Add(1)
						okAt[ids[ci][i]] = time.Now()
					}
					l = append(l, time.Since(at))
				}
				mu.Lock()
				lat = append(lat, l...)
				maps.Copy(answered, okAt)
				mu.Unlock()
			})
		}
		wg.Wait()
		want := got0 + ok.Load()
		for deadline := time.Now().Add(2 * time.Minute); sk.got.Load() < want && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		elapsed := sk.lastAt().Sub(start)
		delivered := sk.got.Load() - got0
		lk1, _ := lk.cpu()
		sw1, _ := lk.switches()
		gw1, _ := gw.cpu()
		slices.Sort(lat)
		pct := func(l []time.Duration, p float64) time.Duration {
			if len(l) == 0 {
				return 0
			}
			return l[min(len(l)-1, int(float64(len(l))*p))]
		}
		notify := sk.notifyTimes(answered)
		per := time.Duration(max(delivered, 1))
		fmt.Printf("| %s | %d | %.0f | %s | %s | %s | %s | %s | %s | %.1f | %s | %d | %.0f MiB |\n", name, ok.Load(), float64(delivered)/elapsed.Seconds(),
			round(pct(lat, 0.5)), round(pct(lat, 0.99)), round(lat[len(lat)-1]), round(pct(notify, 0.5)), round(pct(notify, 0.99)),
			round((lk1-lk0)/per), float64(sw1-sw0)/float64(per), round((gw1-gw0)/per), sk.bad.Load(), lk.peakRSS())
		if delivered < ok.Load() {
			fmt.Printf("  (only %d of %d accepted events reached the sink within 2 minutes)\n", delivered, ok.Load())
		}
		return nil
	}
	if err := phase("warm-up", 500, 0); err != nil {
		return err
	}
	if *fullClosedLoop {
		if err := phase(fmt.Sprintf("closed loop, %d conns", conns), int(4000*d.Seconds()), 0); err != nil {
			return err
		}
	}
	for _, rate := range rates {
		if err := phase(fmt.Sprintf("open loop, %d/s", rate), int(float64(rate)*d.Seconds()), rate); err != nil {
			return err
		}
	}
	lk.drain()
	time.Sleep(idleSettle)
	fmt.Printf("\nat peak RSS: %s\nidle after the load: %s\n", mem.peak(), mem.now())
	return nil
}
