package deliver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	bolt "go.etcd.io/bbolt"
)

// TestPerResourceOrderUnderLoad enqueues 3 resources x 50 deliveries from
// concurrent producers against a sink that fails 30% of requests at random,
// and checks each resource's deliveries arrive strictly one after another
// in enqueue order: never two of a resource in flight, never one before its
// predecessor succeeded.
func TestPerResourceOrderUnderLoad(t *testing.T) {
	const resources, perResource = 3, 50
	var (
		mu         sync.Mutex
		rng        = rand.New(rand.NewPCG(1, 2))
		inflight   = map[string]int{}
		next       = map[string]int{} // next sequence number expected to succeed
		violations []string
		parallel   atomic.Int32 // max resources in flight at once
	)
	s := newSink(t, func(w http.ResponseWriter, r *http.Request, nth int) int {
		res, n := splitOrderID(r.Header.Get("Idempotency-Key"))
		mu.Lock()
		inflight[res]++
		if inflight[res] > 1 {
			violations = append(violations, fmt.Sprintf("%s: two requests in flight", res))
		}
		if n != next[res] {
			violations = append(violations, fmt.Sprintf("%s: got #%d while #%d had not succeeded", res, n, next[res]))
		}
		busy := int32(0)
		for _, c := range inflight {
			if c > 0 {
				busy++
			}
		}
		if busy > parallel.Load() {
			parallel.Store(busy)
		}
		fail := rng.Float64() < 0.3
		mu.Unlock()

		time.Sleep(time.Millisecond) // widen the window for overlap

		mu.Lock()
		inflight[res]--
		if !fail {
			next[res] = n + 1
		}
		mu.Unlock()
		if fail {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	opts := testOptions()
	opts.Workers, opts.PerDestination = 8, 8
	opts.BreakerCooldown = 2 * time.Millisecond
	o := openOutbox(t, opts)
	start(t, o)

	var wg sync.WaitGroup
	for r := range resources {
		wg.Go(func() {
			res := "room-" + strconv.Itoa(r)
			for batch := 0; batch < perResource; batch += 5 {
				var ds []Delivery
				for n := batch; n < batch+5; n++ {
					d := s.delivery(fmt.Sprintf("%s/%d", res, n), res)
					d.IdempotencyKey = fmt.Sprintf("%s#%d", res, n)
					d.Policy.Attempts = 100
					ds = append(ds, d)
				}
				if err := o.Enqueue(context.Background(), ds); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	waitIdle(t, o, 20*time.Second)

	mu.Lock()
	defer mu.Unlock()
	for _, v := range violations {
		t.Error(v)
	}
	for r := range resources {
		res := "room-" + strconv.Itoa(r)
		if next[res] != perResource {
			t.Errorf("%s: %d delivered in order, want %d", res, next[res], perResource)
		}
	}
	if dl, _ := o.DeadLetters(time.Time{}, 0); len(dl) != 0 {
		t.Errorf("%d dead letters, want 0", len(dl))
	}
	if parallel.Load() < 2 {
		t.Errorf("resources never overlapped (max %d in flight): different keys must run in parallel", parallel.Load())
	}
}

func splitOrderID(key string) (string, int) {
	res, n, _ := strings.Cut(key, "#")
	i, _ := strconv.Atoi(n)
	return res, i
}

// TestDeadDestinationDoesNotSlowOthers points 20 deliveries at a sink that
// never answers (each attempt runs into its timeout) and 20 at a healthy
// sink, with fewer workers than the dead sink has deliveries. The healthy
// ones must finish before the first hung attempt even times out, and the
// dead origin's breaker must then open and stop further attempts.
func TestDeadDestinationDoesNotSlowOthers(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	hung := newSink(t, func(w http.ResponseWriter, r *http.Request, nth int) int {
		select {
		case <-r.Context().Done():
		case <-release:
		}
		return http.StatusOK
	})
	healthy := okSink(t)

	const timeout = 900 * time.Millisecond
	opts := testOptions()
	opts.Workers, opts.PerDestination = 4, 2
	opts.BreakerThreshold = 3
	opts.BreakerCooldown = time.Minute
	o := openOutbox(t, opts)

	var ds []Delivery
	for i := range 20 {
		d := hung.delivery("hung-"+strconv.Itoa(i), "room-"+strconv.Itoa(i))
		d.Policy.Timeout = timeout
		d.Policy.Attempts = 10
		ds = append(ds, d)
	}
	enqueue(t, o, ds...)
	start(t, o)
	eventually(t, 2*time.Second, "the hung sink to be busy", func() bool { return len(hung.all()) >= 2 })

	began := time.Now()
	ds = ds[:0]
	for i := range 20 {
		ds = append(ds, healthy.delivery("ok-"+strconv.Itoa(i), "room-"+strconv.Itoa(i)))
	}
	enqueue(t, o, ds...)
	// Well before the first hung attempt times out (and before the breaker
	// can help): only the per-destination limit keeps workers free.
	eventually(t, 2*time.Second, "healthy deliveries", func() bool { return o.Pending() == 20 })
	if took := time.Since(began); took > timeout*2/3 {
		t.Errorf("healthy deliveries took %s next to a dead destination, want < %s", took, timeout*2/3)
	}
	if n := len(healthy.all()); n != 20 {
		t.Errorf("healthy sink got %d requests, want 20", n)
	}

	eventually(t, 5*time.Second, "the dead origin's breaker to open", func() bool {
		return testutil.ToFloat64(o.m.breakerOpen) == 1
	})
	// Attempts already under way when it opened may still time out; after
	// that, nothing more goes to the dead origin during the cooldown.
	time.Sleep(timeout + 100*time.Millisecond)
	before := len(hung.all())
	time.Sleep(300 * time.Millisecond)
	if after := len(hung.all()); after != before {
		t.Errorf("open breaker let %d more requests through", after-before)
	}
	if got := testutil.ToFloat64(o.m.attempts.WithLabelValues("plug")); got != float64(before+20) {
		t.Errorf("attempts_total %v, want %d: only real attempts are charged", got, before+20)
	}
}

// TestBreakerProbesAndCloses runs a destination that is down for a while:
// the breaker opens after the threshold, lets exactly one probe through per
// cooldown, charges no attempts while open (so deliveries with few attempts
// survive a long outage), and closes when a probe succeeds.
func TestBreakerProbesAndCloses(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	s := newSink(t, func(w http.ResponseWriter, r *http.Request, nth int) int {
		if down.Load() {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	opts := testOptions()
	opts.BreakerThreshold = 3
	opts.BreakerCooldown = 100 * time.Millisecond
	o := openOutbox(t, opts)
	var ds []Delivery
	for i := range 6 {
		d := s.delivery("d"+strconv.Itoa(i), "room-"+strconv.Itoa(i))
		d.Policy.Attempts = 4
		ds = append(ds, d)
	}
	enqueue(t, o, ds...)
	start(t, o)

	eventually(t, 2*time.Second, "breaker to open", func() bool { return testutil.ToFloat64(o.m.breakerOpen) == 1 })
	time.Sleep(550 * time.Millisecond) // cooldowns 100 + 200 ms, then the next probe waits 400 ms
	down.Store(false)
	waitIdle(t, o, 5*time.Second)

	if dl, _ := o.DeadLetters(time.Time{}, 0); len(dl) != 0 {
		t.Fatalf("%d deliveries died during the outage although attempts are not charged while open", len(dl))
	}
	if got := testutil.ToFloat64(o.m.breakerOpen); got != 0 {
		t.Errorf("breaker_open = %v after recovery, want 0", got)
	}
	hits := s.all()
	// Failures before it opened (3, plus any already in flight, at most
	// PerDestination), then probes spaced by the growing cooldown.
	var gaps []time.Duration
	for i := 1; i < len(hits); i++ {
		gaps = append(gaps, hits[i].at.Sub(hits[i-1].at))
	}
	var probes int
	for _, g := range gaps {
		if g >= 90*time.Millisecond {
			probes++
		}
	}
	if probes < 2 || probes > 4 {
		t.Errorf("saw %d cooldown-spaced requests (gaps %v), want 2-4 probes", probes, gaps)
	}
	if len(hits) > 6+4+4 {
		t.Errorf("%d requests during a 650ms outage: the breaker did not hold them back", len(hits))
	}
}

// TestSchedulerBreakerAndLimits drives the scheduler directly with a fake
// clock: per-destination limit, per-key ordering, breaker open / probe /
// reopen with doubling up to the cap / close, and isolation of other
// origins.
func TestSchedulerBreakerAndLimits(t *testing.T) {
	s := newScheduler(Options{Workers: 10, PerDestination: 2, BreakerThreshold: 2, BreakerCooldown: time.Minute})
	t0 := time.Now()
	mk := func(seq uint64, origin, resource string) *item {
		return &item{seq: seq, origin: origin, rec: &record{Delivery: Delivery{Plugin: "p", Resource: resource}}}
	}
	s.add(mk(1, "a", "r1"), t0)
	s.add(mk(2, "a", "r1"), t0) // same key: must wait for #1
	s.add(mk(3, "a", "r2"), t0)
	s.add(mk(4, "a", "r3"), t0)

	ls, _ := s.next(t0)
	if len(ls) != 2 {
		t.Fatalf("started %d, want 2 (PerDestination)", len(ls))
	}
	for _, l := range ls {
		if l.it.seq == 2 {
			t.Fatal("#2 started while #1 of the same key was pending")
		}
	}
	// Two consecutive failures open the breaker.
	if ch := s.finish(ls[0], failing, outRetry, t0, t0); ch != breakerSame {
		t.Fatalf("first failure: change %v, want none", ch)
	}
	if ch := s.finish(ls[1], failing, outRetry, t0, t0); ch != breakerOpened {
		t.Fatalf("second failure: change %v, want opened", ch)
	}
	if s.open != 1 {
		t.Fatalf("open origins %d, want 1", s.open)
	}
	ls, wake := s.next(t0.Add(time.Second))
	if len(ls) != 0 || !wake.Equal(t0.Add(time.Minute)) {
		t.Fatalf("while open: started %d, wake %v; want 0 and the end of the cooldown", len(ls), wake.Sub(t0))
	}

	// Another origin is not affected.
	s.add(mk(5, "b", "r1"), t0)
	if ls, _ := s.next(t0.Add(time.Second)); len(ls) != 1 || ls[0].it.seq != 5 {
		t.Fatalf("origin b blocked by a's breaker: %v", ls)
	} else {
		s.finish(ls[0], healthy, outFinished, time.Time{}, t0)
	}

	// Cooldown over: exactly one probe.
	now := t0.Add(time.Minute)
	probe, _ := s.next(now)
	if len(probe) != 1 || !probe[0].probe {
		t.Fatalf("after cooldown started %v, want exactly one probe", probe)
	}
	if ls, _ := s.next(now); len(ls) != 0 {
		t.Fatalf("started %d more while the probe is in flight", len(ls))
	}
	// Failed probes double the cooldown up to the 5 min cap.
	for _, want := range []time.Duration{2 * time.Minute, 4 * time.Minute, 5 * time.Minute, 5 * time.Minute} {
		if ch := s.finish(probe[0], failing, outRetry, now, now); ch != breakerReopened {
			t.Fatalf("failed probe: change %v, want reopened", ch)
		}
		if ls, wake := s.next(now.Add(want - time.Second)); len(ls) != 0 || !wake.Equal(now.Add(want)) {
			t.Fatalf("after failed probe: started %d, wake +%v; want 0, +%v", len(ls), wake.Sub(now), want)
		}
		now = now.Add(want)
		if probe, _ = s.next(now); len(probe) != 1 || !probe[0].probe {
			t.Fatalf("no single probe after a %v cooldown: %v", want, probe)
		}
	}
	// A probe that says nothing (e.g. a missing secret) lets the next one go
	// at once.
	s.finish(probe[0], neutral, outRetry, now, now)
	if probe, _ = s.next(now); len(probe) != 1 || !probe[0].probe {
		t.Fatalf("after a neutral probe: %v, want another probe", probe)
	}
	// A successful probe closes the breaker and releases the rest.
	if ch := s.finish(probe[0], healthy, outFinished, time.Time{}, now); ch != breakerClosed {
		t.Fatalf("successful probe: change %v, want closed", ch)
	}
	if s.open != 0 {
		t.Fatalf("open origins %d after close, want 0", s.open)
	}
	ls, _ = s.next(now)
	if len(ls) != 2 {
		t.Fatalf("after close started %d, want 2", len(ls))
	}
	for _, l := range ls {
		s.finish(l, healthy, outFinished, time.Time{}, now)
	}
	ls, _ = s.next(now)
	for _, l := range ls {
		s.finish(l, healthy, outFinished, time.Time{}, now)
	}
	if s.pending != 0 || len(s.queues) != 0 || len(s.origins) != 0 || s.inflight != 0 {
		t.Fatalf("leftover state: pending %d, queues %d, origins %d, inflight %d", s.pending, len(s.queues), len(s.origins), s.inflight)
	}
}

// TestCrashResume simulates a crash: while an outbox has delivered some
// deliveries and has others in flight, its file is copied as it is on disk
// at that moment (a consistent bbolt snapshot), and a new outbox opened on
// the copy takes over. Nothing may be lost, nothing delivered before the
// crash may be resent, and the only duplicates are the in-flight ones,
// which carry the same Idempotency-Key.
func TestCrashResume(t *testing.T) {
	const total, deliverFirst = 40, 10
	var (
		phase           atomic.Int32 // 0 before the crash, 1 after
		okCount         atomic.Int32
		mu              sync.Mutex
		deliveredBefore []string
		inFlight        = map[string]string{} // id -> Idempotency-Key, hanging at the crash
		after           []hit
	)
	s := newSink(t, func(w http.ResponseWriter, r *http.Request, nth int) int {
		key := r.Header.Get("Idempotency-Key")
		id := strings.TrimPrefix(key, "idem-")
		mu.Lock()
		if phase.Load() == 1 {
			after = append(after, hit{id: id, header: r.Header.Clone()})
			mu.Unlock()
			return http.StatusOK
		}
		if okCount.Add(1) <= deliverFirst {
			deliveredBefore = append(deliveredBefore, id)
			mu.Unlock()
			return http.StatusOK
		}
		inFlight[id] = key
		mu.Unlock()
		<-r.Context().Done() // hangs until the first process goes away
		return http.StatusOK
	})

	dir := t.TempDir()
	opts := testOptions()
	opts.Workers = 4
	a := openAt(t, filepath.Join(dir, "a.db"), opts)
	var ds []Delivery
	for i := range total {
		d := s.delivery(fmt.Sprintf("e%d/plug/0", i), "room-"+strconv.Itoa(i%8))
		d.Policy.Timeout = time.Minute
		ds = append(ds, d)
	}
	enqueue(t, a, ds...)
	stopA := start(t, a)
	eventually(t, 5*time.Second, "10 delivered and 4 in flight", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(deliveredBefore) == deliverFirst && len(inFlight) == opts.Workers
	})
	// With every worker stuck and the successes recorded (MarkInterval),
	// nothing is writing: the file is exactly what a crash would leave.
	eventually(t, 5*time.Second, "the successes recorded", func() bool {
		return bucketLen(t, a, bucketPending) == total-deliverFirst
	})
	crashed := filepath.Join(dir, "crashed.db")
	if err := a.db.View(func(tx *bolt.Tx) error { return tx.CopyFile(crashed, 0o600) }); err != nil {
		t.Fatal(err)
	}
	stopA()
	phase.Store(1)

	b := openAt(t, crashed, opts)
	if n := b.Pending(); n != total-deliverFirst {
		t.Fatalf("after the crash %d pending, want %d", n, total-deliverFirst)
	}
	start(t, b)
	waitIdle(t, b, 10*time.Second)

	mu.Lock()
	defer mu.Unlock()
	got := map[string]int{}
	for _, h := range after {
		got[h.id]++
	}
	for _, id := range deliveredBefore {
		if got[id] != 0 {
			t.Errorf("%s was delivered before the crash and resent after it", id)
		}
	}
	for _, d := range ds {
		if !slices.Contains(deliveredBefore, d.ID) && got[d.ID] != 1 {
			t.Errorf("%s sent %d times after the crash, want exactly 1", d.ID, got[d.ID])
		}
	}
	for _, h := range after {
		if key, ok := inFlight[h.id]; ok && h.header.Get("Idempotency-Key") != key {
			t.Errorf("%s resent with Idempotency-Key %q, want %q", h.id, h.header.Get("Idempotency-Key"), key)
		}
	}
	checkOrder(t, after)
}

// checkOrder verifies each resource's deliveries (ids "e<i>/plug/0" with
// resource i%8) arrive in increasing i.
func checkOrder(t *testing.T, hits []hit) {
	t.Helper()
	last := map[int]int{}
	for _, h := range hits {
		var i int
		if _, err := fmt.Sscanf(h.id, "e%d/", &i); err != nil {
			t.Fatalf("unexpected id %q", h.id)
		}
		if prev, ok := last[i%8]; ok && i <= prev {
			t.Errorf("resource %d: %s after e%d", i%8, h.id, prev)
		}
		last[i%8] = i
	}
}

// TestRestartContinuesAttemptCount stops and closes an outbox after two of
// three attempts failed, reopens it, and checks only one attempt remains,
// and that the delivery queued behind it is sent once it is dead-lettered.
func TestRestartContinuesAttemptCount(t *testing.T) {
	s := newSink(t, func(w http.ResponseWriter, r *http.Request, nth int) int {
		if r.Header.Get("Idempotency-Key") == "idem-a" {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	path := filepath.Join(t.TempDir(), "outbox.db")
	o := openAt(t, path, testOptions())
	a := s.delivery("a", "room")
	a.Policy.Backoff, a.Policy.MaxBackoff = 150*time.Millisecond, 150*time.Millisecond
	enqueue(t, o, a, s.delivery("b", "room"))
	stop := start(t, o)
	eventually(t, 5*time.Second, "two failed attempts persisted", func() bool {
		r := stored(t, o, "a")
		return r != nil && r.Attempts == 2
	})
	stop()
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(s.hitsFor("b")); n != 0 {
		t.Fatalf("b sent %d times before a finished", n)
	}

	o = openAt(t, path, testOptions())
	if r := stored(t, o, "a"); r.LastStatus != 500 || r.NextAt.IsZero() {
		t.Errorf("persisted state lost: %+v", r)
	}
	start(t, o)
	waitIdle(t, o, 5*time.Second)
	if n := len(s.hitsFor("a")); n != 3 {
		t.Errorf("a attempted %d times in total, want 3", n)
	}
	if n := len(s.hitsFor("b")); n != 1 {
		t.Errorf("b sent %d times, want 1", n)
	}
	dl, err := o.DeadLetter("a")
	if err != nil || dl.Attempts != 3 {
		t.Errorf("dead letter a: %+v, %v; want 3 attempts", dl, err)
	}
}

func TestDeadLettersListShowReplay(t *testing.T) {
	clk := newClock()
	var failing atomic.Bool
	failing.Store(true)
	s := newSink(t, func(w http.ResponseWriter, r *http.Request, nth int) int {
		if failing.Load() {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	reg := prometheus.NewRegistry()
	opts := testOptions()
	opts.Now = clk.Now
	opts.Registerer = reg
	opts.Secrets = secrets{"plug/k": "key"}
	path := filepath.Join(t.TempDir(), "outbox.db")
	o := openAt(t, path, opts)
	stop := start(t, o)

	var deadAt []time.Time
	for i, id := range []string{"d1", "d2", "d3"} {
		d := s.delivery(id, "room-"+strconv.Itoa(i))
		d.Policy.Attempts = 2
		d.Sign = &Sign{Scheme: SchemeHMACSHA256Hex, Secret: "k"}
		enqueue(t, o, d)
		waitIdle(t, o, 5*time.Second)
		deadAt = append(deadAt, clk.Now())
		clk.Advance(time.Minute)
	}
	ids := func(dls []DeadLetter) []string {
		var out []string
		for _, dl := range dls {
			out = append(out, dl.Delivery.ID)
		}
		return out
	}
	list := []struct {
		since time.Time
		limit int
		want  []string
	}{
		{time.Time{}, 0, []string{"d1", "d2", "d3"}},
		{deadAt[1], 0, []string{"d2", "d3"}},
		{deadAt[1].Add(time.Millisecond), 0, []string{"d3"}},
		{time.Time{}, 2, []string{"d2", "d3"}}, // the newest two, newest last
		{clk.Now(), 0, nil},
	}
	for _, tt := range list {
		dls, err := o.DeadLetters(tt.since, tt.limit)
		if err != nil {
			t.Fatal(err)
		}
		if got := ids(dls); !slices.Equal(got, tt.want) {
			t.Errorf("DeadLetters(%v, %d) = %v, want %v", tt.since, tt.limit, got, tt.want)
		}
	}

	dl, err := o.DeadLetter("d2")
	if err != nil {
		t.Fatal(err)
	}
	if dl.Attempts != 2 || dl.LastStatus != 500 || !dl.DeadAt.Equal(deadAt[1]) || string(dl.Delivery.Body) != "d2" ||
		!strings.Contains(dl.LastError, "HTTP 500") {
		t.Errorf("DeadLetter(d2) = %+v", dl)
	}
	if _, err := o.DeadLetter("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("DeadLetter(nope) = %v, want ErrNotFound", err)
	}
	if got := testutil.ToFloat64(o.m.dlq); got != 3 {
		t.Errorf("dlq_size %v, want 3", got)
	}

	// The gauge comes from the file after a restart.
	stop()
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	o = openAt(t, path, opts)
	if got := testutil.ToFloat64(o.m.dlq); got != 3 {
		t.Errorf("dlq_size after reopen %v, want 3", got)
	}
	start(t, o)

	// Replayed while the destination still fails: attempts start over.
	if err := o.Replay(context.Background(), "d3"); err != nil {
		t.Fatal(err)
	}
	waitIdle(t, o, 5*time.Second)
	if n := len(s.hitsFor("d3")); n != 4 {
		t.Errorf("d3 sent %d times, want 4 (2 + 2 after the replay)", n)
	}
	if dl, err := o.DeadLetter("d3"); err != nil || dl.Attempts != 2 {
		t.Errorf("d3 after a failed replay: %+v, %v; want dead again after 2 attempts", dl, err)
	}

	failing.Store(false)
	if err := o.Replay(context.Background(), "d1"); err != nil {
		t.Fatal(err)
	}
	waitIdle(t, o, 5*time.Second)
	d1 := s.hitsFor("d1")
	if len(d1) != 3 {
		t.Fatalf("d1 sent %d times, want 3 (2 originally + 1 after the replay)", len(d1))
	}
	// CreatedAt was kept, so the default hmac timestamp and signature match.
	for _, k := range []string{"X-Timestamp", "X-Signature"} {
		if d1[0].header.Get(k) != d1[1].header.Get(k) {
			t.Errorf("replayed %s %q differs from the original %q", k, d1[1].header.Get(k), d1[0].header.Get(k))
		}
	}
	if _, err := o.DeadLetter("d1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("d1 still a dead letter after replay: %v", err)
	}
	if err := o.Replay(context.Background(), "d1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Replay(d1) = %v, want ErrNotFound", err)
	}
	if got := testutil.ToFloat64(o.m.dlq); got != 2 {
		t.Errorf("dlq_size after one replay %v, want 2", got)
	}

	n, err := o.ReplaySince(context.Background(), deadAt[2])
	if err != nil || n != 1 {
		t.Fatalf("ReplaySince(d3's time) = %d, %v; want 1", n, err)
	}
	n, err = o.ReplaySince(context.Background(), time.Time{})
	if err != nil || n != 1 {
		t.Fatalf("ReplaySince(zero) = %d, %v; want 1 (only d2 left)", n, err)
	}
	waitIdle(t, o, 5*time.Second)
	if dls, _ := o.DeadLetters(time.Time{}, 0); len(dls) != 0 {
		t.Errorf("dead letters left: %v", ids(dls))
	}
	if got := testutil.ToFloat64(o.m.dlq); got != 0 {
		t.Errorf("dlq_size %v, want 0", got)
	}
	for id, want := range map[string]int{"d2": 3, "d3": 5} {
		if n := len(s.hitsFor(id)); n != want {
			t.Errorf("%s sent %d times, want %d", id, n, want)
		}
	}
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestLogs checks that every log line about a delivery carries event_id,
// plugin and delivery, and that no secret, signature or secret-bearing URL
// path is ever logged.
func TestLogs(t *testing.T) {
	const secret, pathSecret = "S3CR3T-KEY-VALUE", "T0KEN-IN-PATH"
	var buf syncBuffer
	s := newSink(t, func(w http.ResponseWriter, r *http.Request, nth int) int {
		switch {
		case r.Header.Get("Idempotency-Key") == "idem-evil":
			http.Redirect(w, r, "http://evil.example.com/", http.StatusFound)
			return 0
		case r.Header.Get("Idempotency-Key") == "idem-dead" || nth < 2:
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	opts := testOptions()
	opts.Logger = slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts.Secrets = secrets{"plug/k": secret}
	opts.BreakerThreshold = 2
	o := openOutbox(t, opts)
	var ds []Delivery
	for _, id := range []string{"ok", "dead", "evil"} {
		d := s.delivery(id, id)
		d.URL = s.srv.URL + "/services/" + pathSecret
		d.Sign = &Sign{Scheme: SchemeStandardWebhooks, Secret: "k"}
		ds = append(ds, d)
	}
	// Nothing listens on port 1: a transport error, whose *url.Error text
	// would repeat the whole URL.
	noListener := s.delivery("refused-conn", "refused-conn")
	noListener.URL = "http://127.0.0.1:1/services/" + pathSecret
	noListener.Policy.Allow = []string{"http://127.0.0.1:1"}
	ds = append(ds, noListener)
	enqueue(t, o, ds...)
	enqueue(t, o, ds[0]) // logged as a skipped duplicate
	start(t, o)
	waitIdle(t, o, 5*time.Second)
	if err := o.Replay(context.Background(), "dead"); err != nil {
		t.Fatal(err)
	}
	waitIdle(t, o, 5*time.Second)

	out := buf.String()
	for _, h := range s.all() {
		if sig := h.header.Get("webhook-signature"); sig == "" || strings.Contains(out, strings.TrimPrefix(sig, "v1,")) {
			t.Errorf("signature %q missing from the request or present in the logs", sig)
		}
	}
	for _, leak := range []string{secret, pathSecret} {
		if strings.Contains(out, leak) {
			t.Errorf("logs contain %q", leak)
		}
	}
	var about int
	for line := range strings.Lines(out) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("bad log line %q: %v", line, err)
		}
		if msg, _ := m["msg"].(string); strings.HasPrefix(msg, "outbox:") && m["delivery"] == nil {
			continue // about the outbox or an origin, not one delivery
		}
		about++
		for _, k := range []string{"event_id", "plugin", "delivery"} {
			if v, _ := m[k].(string); v == "" {
				t.Errorf("log line without %s: %s", k, line)
			}
		}
	}
	// delivered, 2 retries, dead, refused, duplicate, replayed, and more.
	if about < 7 {
		t.Errorf("only %d log lines about deliveries:\n%s", about, out)
	}
}

// TestUnrecordedSuccessIsResent: a success is recorded within MarkInterval,
// not in an fsync of its own. A crash before that sends the delivery once
// more with the same Idempotency-Key and body; stopping Run records every
// success, so an orderly restart sends nothing again.
func TestUnrecordedSuccessIsResent(t *testing.T) {
	var (
		mu   sync.Mutex
		hits []hit
	)
	s := newSink(t, func(w http.ResponseWriter, r *http.Request, nth int) int {
		mu.Lock()
		defer mu.Unlock()
		hits = append(hits, hit{id: strings.TrimPrefix(r.Header.Get("Idempotency-Key"), "idem-"), header: r.Header.Clone()})
		return http.StatusOK
	})
	dir := t.TempDir()
	opts := testOptions()
	opts.MarkInterval = time.Hour // no flush until Run stops
	a := openAt(t, filepath.Join(dir, "a.db"), opts)
	enqueue(t, a, s.delivery("e1/plug/0", "room"))
	stopA := start(t, a)
	waitIdle(t, a, 5*time.Second)
	crashed := filepath.Join(dir, "crashed.db")
	if err := a.db.View(func(tx *bolt.Tx) error { return tx.CopyFile(crashed, 0o600) }); err != nil {
		t.Fatal(err)
	}
	stopA()
	if n := bucketLen(t, a, bucketPending); n != 0 {
		t.Fatalf("%d pending in the file after Run stopped, want 0", n)
	}

	for _, tc := range []struct {
		name   string
		path   string
		resent int
	}{
		{"orderly stop", filepath.Join(dir, "a.db"), 0},
		{"crash before the success was recorded", crashed, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.path == filepath.Join(dir, "a.db") {
				if err := a.Close(); err != nil {
					t.Fatal(err)
				}
			}
			mu.Lock()
			before := len(hits)
			mu.Unlock()
			b := openAt(t, tc.path, opts)
			start(t, b)
			waitIdle(t, b, 5*time.Second)
			mu.Lock()
			defer mu.Unlock()
			if got := len(hits) - before; got != tc.resent {
				t.Fatalf("sent %d more times, want %d", got, tc.resent)
			}
			if tc.resent > 0 && hits[len(hits)-1].header.Get("Idempotency-Key") != hits[0].header.Get("Idempotency-Key") {
				t.Errorf("resent with Idempotency-Key %q, first sent with %q", hits[len(hits)-1].header.Get("Idempotency-Key"), hits[0].header.Get("Idempotency-Key"))
			}
		})
	}
}

// TestEnqueueRecordsWaitingSuccesses: an Enqueue's commit takes the
// successes waiting for MarkInterval along, so under load they cost no
// commit of their own.
func TestEnqueueRecordsWaitingSuccesses(t *testing.T) {
	s := okSink(t)
	opts := testOptions()
	opts.MarkInterval = time.Hour // only a commit made anyway records them
	o := openOutbox(t, opts)
	enqueue(t, o, s.delivery("e1/plug/0", "room"), s.delivery("e2/plug/0", "room"))
	start(t, o)
	waitIdle(t, o, 5*time.Second)
	if n := bucketLen(t, o, bucketPending); n != 2 {
		t.Fatalf("%d pending in the file before the next enqueue, want the 2 delivered but unrecorded", n)
	}
	enqueue(t, o, s.delivery("e3/plug/0", "other"))
	if n := bucketLen(t, o, bucketDone); n < 2 {
		t.Fatalf("%d recorded as delivered after the next enqueue, want at least 2", n)
	}
}
