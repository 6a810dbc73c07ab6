package deliver

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lkedge/lkedge/host/egress"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	bolt "go.etcd.io/bbolt"
)

func TestEnqueueRejectsInvalidDeliveries(t *testing.T) {
	s := okSink(t)
	tests := []struct {
		name   string
		modify func(d *Delivery)
		want   string
	}{
		{"empty id", func(d *Delivery) { d.ID = "" }, "empty id"},
		{"id too long", func(d *Delivery) { d.ID = strings.Repeat("x", maxIDLen+1) }, "id longer than"},
		{"method not a token", func(d *Delivery) { d.Method = "PO ST" }, `invalid method "PO ST"`},
		{"unparsable URL", func(d *Delivery) { d.URL = "http://[::1" }, "invalid URL"},
		{"scheme not http(s)", func(d *Delivery) { d.URL = "ftp://127.0.0.1/x" }, "scheme must be http or https"},
		{"no host", func(d *Delivery) { d.URL = "http:///x" }, "no host"},
		{"not in the allow-list", func(d *Delivery) { d.URL = "http://127.0.0.1:1/x" }, "not in the plugin's allow-list"},
		{"empty allow-list allows nothing", func(d *Delivery) { d.Policy.Allow = nil }, "not in the plugin's allow-list"},
		{"bad allow-list entry", func(d *Delivery) { d.Policy.Allow = []string{"ftp://x"} }, `allow-list entry "ftp://x"`},
		{"header name not a token", func(d *Delivery) { d.Header = [][2]string{{"Bad Header", "v"}} }, "invalid header name"},
		{"header value splits headers", func(d *Delivery) { d.Header = [][2]string{{"X-A", "v\r\nX-Injected: 1"}} }, "control characters"},
		{"idempotency key with newline", func(d *Delivery) { d.IdempotencyKey = "a\nb" }, "idempotency key"},
		{"unknown signing scheme", func(d *Delivery) { d.Sign = &Sign{Scheme: "rot13", Secret: "s"} }, "unknown scheme"},
		{"negative attempts", func(d *Delivery) { d.Policy.Attempts = -1 }, "negative attempts"},
		{"attempts contradict schedule", func(d *Delivery) {
			d.Policy.Attempts = 3
			d.Policy.Schedule = []time.Duration{time.Second}
		}, "contradicts a schedule"},
		{"timeout out of range", func(d *Delivery) { d.Policy.Timeout = 365 * 24 * time.Hour }, "timeout"},
		{"negative schedule entry", func(d *Delivery) { d.Policy.Schedule = []time.Duration{-time.Second} }, "schedule[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := openOutbox(t, testOptions())
			good := s.delivery("good", "r")
			bad := s.delivery("bad", "r")
			tt.modify(&bad)
			err := o.Enqueue(context.Background(), []Delivery{good, bad})
			if err == nil {
				t.Fatal("Enqueue accepted an invalid delivery")
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("delivery %q", bad.ID)) {
				t.Errorf("error %q does not name the delivery", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
			if n, stored := o.Pending(), bucketLen(t, o, bucketPending); n != 0 || stored != 0 {
				t.Errorf("after a rejected batch: Pending()=%d, stored=%d, want 0 and 0", n, stored)
			}
		})
	}
}

func TestEnqueueFillsDefaults(t *testing.T) {
	clk := newClock()
	opts := testOptions()
	opts.Now = clk.Now
	o := openOutbox(t, opts)
	s := okSink(t)

	plain := s.delivery("plain", "r")
	plain.Policy = Policy{Allow: plain.Policy.Allow}
	scheduled := s.delivery("scheduled", "r")
	sw := []time.Duration{5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour}
	scheduled.Policy = Policy{Allow: plain.Policy.Allow, Schedule: sw}
	enqueue(t, o, plain, scheduled)
	// The caller's buffers are its own again once Enqueue returns.
	plain.Body[0] = 'X'

	r := stored(t, o, "plain")
	want := Policy{Attempts: 6, Backoff: 300 * time.Millisecond, MaxBackoff: time.Hour, Timeout: 5 * time.Second}
	p := r.Delivery.Policy
	if p.Attempts != want.Attempts || p.Backoff != want.Backoff || p.MaxBackoff != want.MaxBackoff || p.Timeout != want.Timeout {
		t.Errorf("stored policy %+v, want defaults %+v", p, want)
	}
	if r.Delivery.Method != "POST" {
		t.Errorf("method %q, want POST", r.Delivery.Method)
	}
	if !r.Delivery.CreatedAt.Equal(clk.Now()) {
		t.Errorf("CreatedAt %v, want %v", r.Delivery.CreatedAt, clk.Now())
	}
	if string(r.Delivery.Body) != "plain" {
		t.Errorf("stored body %q changed with the caller's slice", r.Delivery.Body)
	}
	if got := stored(t, o, "scheduled").Delivery.Policy.Attempts; got != len(sw)+1 {
		t.Errorf("scheduled attempts %d, want %d", got, len(sw)+1)
	}
}

func TestEnqueueIsIdempotent(t *testing.T) {
	clk := newClock()
	opts := testOptions()
	opts.Now = clk.Now
	opts.DoneWindow = time.Minute
	o := openOutbox(t, opts)
	s := newSink(t, func(w http.ResponseWriter, r *http.Request, nth int) int {
		if strings.HasPrefix(r.Header.Get("Idempotency-Key"), "idem-dead") {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	start(t, o)

	a := s.delivery("a", "r")
	enqueue(t, o, a, a) // the same id twice in one batch
	enqueue(t, o, a)    // and again while pending
	waitIdle(t, o, 5*time.Second)
	if n := len(s.hitsFor("a")); n != 1 {
		t.Fatalf("a sent %d times, want 1", n)
	}

	dead := s.delivery("dead", "r")
	dead.Policy.Attempts = 1
	enqueue(t, o, dead)
	waitIdle(t, o, 5*time.Second)

	// Delivered within the window and dead: both skipped.
	enqueue(t, o, a, dead)
	if n := o.Pending(); n != 0 {
		t.Fatalf("re-enqueue of delivered and dead ids left %d pending, want 0", n)
	}

	// Past the window the id is new again (an operator re-sending on
	// purpose, long after any crash-replay could happen). The success must
	// have left the file first, as it does within MarkInterval.
	o.flushMarks()
	clk.Advance(2 * time.Minute)
	enqueue(t, o, a)
	waitIdle(t, o, 5*time.Second)
	if n := len(s.hitsFor("a")); n != 2 {
		t.Fatalf("a sent %d times after the window, want 2", n)
	}
	if n := len(s.hitsFor("dead")); n != 1 {
		t.Fatalf("dead sent %d times, want 1", n)
	}

	// Pruning forgets the first, expired mark but keeps the fresh one.
	o.flushMarks()
	clk.Advance(30 * time.Second)
	if err := o.prune(); err != nil {
		t.Fatal(err)
	}
	if n := bucketLen(t, o, bucketDone); n != 1 {
		t.Fatalf("done ids after prune: %d, want 1 (a's second delivery)", n)
	}
	if n := bucketLen(t, o, bucketDoneByTime); n != 1 {
		t.Fatalf("done index after prune: %d, want 1", n)
	}
	enqueue(t, o, a)
	if n := o.Pending(); n != 0 {
		t.Fatalf("a re-enqueued within its second window: %d pending, want 0", n)
	}
}

func TestSendOutcomes(t *testing.T) {
	type check struct {
		hits     int    // requests that reached the sink
		dead     bool   // ends as a dead letter (else delivered)
		status   int    // dead letter's LastStatus
		errText  string // part of the dead letter's LastError
		outcomes map[string]float64
		attempts float64
	}
	hang := func(r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}
	tests := []struct {
		name     string
		handle   func(w http.ResponseWriter, r *http.Request, nth int) int
		modify   func(d *Delivery, sinkURL string)
		resolver egress.Resolver
		want     check
	}{
		{
			name: "fails 3 times then succeeds",
			handle: func(w http.ResponseWriter, r *http.Request, nth int) int {
				if nth < 3 {
					return http.StatusInternalServerError
				}
				return http.StatusNoContent
			},
			modify: func(d *Delivery, _ string) { d.Policy.Attempts = 6 },
			want:   check{hits: 4, outcomes: map[string]float64{outcomeRetried: 3, outcomeDelivered: 1}, attempts: 4},
		},
		{
			name: "always fails: dead after the last attempt with the reason",
			handle: func(w http.ResponseWriter, r *http.Request, nth int) int {
				w.WriteHeader(http.StatusInternalServerError)
				_, _ = w.Write([]byte("boom"))
				return 0
			},
			want: check{hits: 3, dead: true, status: 500, errText: `HTTP 500 Internal Server Error: "boom"`,
				outcomes: map[string]float64{outcomeRetried: 2, outcomeDead: 1}, attempts: 3},
		},
		{
			name: "4xx is a failure too",
			handle: func(w http.ResponseWriter, r *http.Request, nth int) int {
				if nth == 0 {
					return http.StatusNotFound
				}
				return http.StatusOK
			},
			want: check{hits: 2, outcomes: map[string]float64{outcomeRetried: 1, outcomeDelivered: 1}, attempts: 2},
		},
		{
			name: "times out then recovers",
			handle: func(w http.ResponseWriter, r *http.Request, nth int) int {
				if nth == 0 {
					hang(r)
				}
				return http.StatusOK
			},
			modify: func(d *Delivery, _ string) { d.Policy.Timeout = 100 * time.Millisecond },
			want:   check{hits: 2, outcomes: map[string]float64{outcomeRetried: 1, outcomeDelivered: 1}, attempts: 2},
		},
		{
			name: "times out every time",
			handle: func(w http.ResponseWriter, r *http.Request, nth int) int {
				hang(r)
				return http.StatusOK
			},
			modify: func(d *Delivery, _ string) {
				d.Policy.Timeout = 50 * time.Millisecond
				d.Policy.Attempts = 2
			},
			want: check{hits: 2, dead: true, errText: "no response within 50ms",
				outcomes: map[string]float64{outcomeRetried: 1, outcomeDead: 1}, attempts: 2},
		},
		{
			name: "redirect within the allow-list is followed",
			handle: func(w http.ResponseWriter, r *http.Request, nth int) int {
				if r.URL.Path == "/hook" {
					http.Redirect(w, r, "/moved", http.StatusTemporaryRedirect)
					return 0
				}
				return http.StatusOK
			},
			want: check{hits: 2, outcomes: map[string]float64{outcomeDelivered: 1}, attempts: 1},
		},
		{
			name: "redirect to a host outside the allow-list is refused at once",
			handle: func(w http.ResponseWriter, r *http.Request, nth int) int {
				http.Redirect(w, r, "http://evil.example.com/collect", http.StatusFound)
				return 0
			},
			modify: func(d *Delivery, _ string) { d.Policy.Attempts = 6 },
			want: check{hits: 1, dead: true, errText: `destination "http://evil.example.com:80" is not in the plugin's allow-list`,
				outcomes: map[string]float64{outcomeRefused: 1}, attempts: 1},
		},
		{
			name:   "allowed name resolving to loopback is refused at dial time",
			handle: func(w http.ResponseWriter, r *http.Request, nth int) int { return http.StatusOK },
			modify: func(d *Delivery, sinkURL string) {
				port := sinkURL[strings.LastIndex(sinkURL, ":")+1:]
				d.URL = "http://hooks.example.com:" + port + "/hook"
				d.Policy.Allow = []string{"http://hooks.example.com:" + port}
				d.Policy.Attempts = 6
			},
			resolver: func(ctx context.Context, host string) ([]netip.Addr, error) {
				return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
			},
			want: check{hits: 0, dead: true, errText: "127.0.0.1 (loopback), which the allow-list does not permit",
				outcomes: map[string]float64{outcomeRefused: 1}, attempts: 1},
		},
		{
			name:   "missing secret is retried, then dead-lettered",
			handle: func(w http.ResponseWriter, r *http.Request, nth int) int { return http.StatusOK },
			modify: func(d *Delivery, _ string) { d.Sign = &Sign{Scheme: SchemeHMACSHA256Hex, Secret: "absent"} },
			want: check{hits: 0, dead: true, errText: `secret "absent": no such secret`,
				outcomes: map[string]float64{outcomeRetried: 2, outcomeDead: 1}, attempts: 3},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			reg := prometheus.NewRegistry()
			opts := testOptions()
			opts.Registerer = reg
			opts.Secrets = secrets{"plug/present": "k"}
			o := openOutbox(t, opts)
			if tt.resolver != nil {
				o.egressOpts = []egress.Option{egress.WithResolver(tt.resolver)}
			}
			s := newSink(t, tt.handle)
			d := s.delivery("d1", "room")
			if tt.modify != nil {
				tt.modify(&d, s.srv.URL)
			}
			enqueue(t, o, d)
			start(t, o)
			waitIdle(t, o, 10*time.Second)

			if n := len(s.all()); n != tt.want.hits {
				t.Errorf("sink got %d requests, want %d", n, tt.want.hits)
			}
			dl, err := o.DeadLetter("d1")
			switch {
			case tt.want.dead && err != nil:
				t.Fatalf("DeadLetter: %v", err)
			case !tt.want.dead && !errors.Is(err, ErrNotFound):
				t.Fatalf("delivery was dead-lettered (%v): %+v", err, dl)
			case tt.want.dead:
				if dl.LastStatus != tt.want.status {
					t.Errorf("LastStatus %d, want %d", dl.LastStatus, tt.want.status)
				}
				if !strings.Contains(dl.LastError, tt.want.errText) {
					t.Errorf("LastError %q does not contain %q", dl.LastError, tt.want.errText)
				}
				if dl.Attempts != int(tt.want.attempts) {
					t.Errorf("dead letter Attempts %d, want %.0f", dl.Attempts, tt.want.attempts)
				}
			}
			for _, outcome := range []string{outcomeDelivered, outcomeRetried, outcomeDead, outcomeRefused} {
				got := testutil.ToFloat64(o.m.deliveries.WithLabelValues("plug", outcome))
				if got != tt.want.outcomes[outcome] {
					t.Errorf("deliveries_total{outcome=%q} = %v, want %v", outcome, got, tt.want.outcomes[outcome])
				}
			}
			if got := testutil.ToFloat64(o.m.attempts.WithLabelValues("plug")); got != tt.want.attempts {
				t.Errorf("attempts_total = %v, want %v", got, tt.want.attempts)
			}
			wantDLQ := 0.0
			if tt.want.dead {
				wantDLQ = 1
			}
			if got := testutil.ToFloat64(o.m.dlq); got != wantDLQ {
				t.Errorf("dlq_size = %v, want %v", got, wantDLQ)
			}
			if got := testutil.ToFloat64(o.m.pending); got != 0 {
				t.Errorf("outbox_pending = %v, want 0", got)
			}
			if n := testutil.CollectAndCount(reg); n == 0 {
				t.Error("nothing registered on Options.Registerer")
			}
		})
	}
}

// TestRetriesRepeatIdempotencyKeyAndSignature checks that every attempt of
// one delivery carries the same Idempotency-Key and (with the default
// CreatedAt timestamp) the same hmac signature, so receivers can dedupe.
func TestRetriesRepeatIdempotencyKeyAndSignature(t *testing.T) {
	opts := testOptions()
	opts.Secrets = secrets{"plug/meet": "meet-api-key"}
	o := openOutbox(t, opts)
	s := newSink(t, func(w http.ResponseWriter, r *http.Request, nth int) int {
		if nth < 2 {
			return http.StatusBadGateway
		}
		return http.StatusOK
	})
	d := s.delivery("signed", "room")
	d.Sign = &Sign{Scheme: SchemeHMACSHA256Hex, Secret: "meet"}
	d.Header = [][2]string{{"Content-Type", "application/json"}, {"X-Multi", "1"}, {"X-Multi", "2"}}
	enqueue(t, o, d)
	start(t, o)
	waitIdle(t, o, 5*time.Second)

	hits := s.hitsFor("signed")
	if len(hits) != 3 {
		t.Fatalf("%d requests, want 3", len(hits))
	}
	first := hits[0].header
	if first.Get("X-Signature") == "" || first.Get("X-Timestamp") == "" {
		t.Fatalf("first attempt not signed: %v", first)
	}
	if got := first.Values("X-Multi"); len(got) != 2 || got[0] != "1" || got[1] != "2" {
		t.Errorf("X-Multi = %q, want [1 2] in order", got)
	}
	for i, h := range hits {
		for _, k := range []string{"Idempotency-Key", "X-Signature", "X-Timestamp", "Content-Type"} {
			if h.header.Get(k) != first.Get(k) {
				t.Errorf("attempt %d: %s = %q, want %q as on the first attempt", i+1, k, h.header.Get(k), first.Get(k))
			}
		}
	}
	if got := first.Get("Idempotency-Key"); got != "idem-signed" {
		t.Errorf("Idempotency-Key %q, want idem-signed", got)
	}
}

func TestRetryAfterIsHonoured(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		retryAfter func() string
		maxBackoff time.Duration
		minGap     time.Duration
		maxGap     time.Duration
	}{
		{name: "delay-seconds on 429", status: http.StatusTooManyRequests,
			retryAfter: func() string { return "1" }, maxBackoff: time.Minute, minGap: time.Second, maxGap: 1800 * time.Millisecond},
		{name: "HTTP-date on 503", status: http.StatusServiceUnavailable,
			retryAfter: func() string { return time.Now().Add(2 * time.Second).UTC().Format(http.TimeFormat) },
			maxBackoff: time.Minute, minGap: time.Second, maxGap: 2800 * time.Millisecond},
		{name: "capped at MaxBackoff", status: http.StatusServiceUnavailable, maxBackoff: 150 * time.Millisecond,
			retryAfter: func() string { return "3600" }, minGap: 150 * time.Millisecond, maxGap: time.Second},
		{name: "ignored on other statuses", status: http.StatusInternalServerError,
			retryAfter: func() string { return "3600" }, maxGap: 500 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := openOutbox(t, testOptions())
			s := newSink(t, func(w http.ResponseWriter, r *http.Request, nth int) int {
				if nth == 0 {
					w.Header().Set("Retry-After", tt.retryAfter())
					return tt.status
				}
				return http.StatusOK
			})
			d := s.delivery("ra", "room")
			if tt.maxBackoff > 0 { // the helper's 5ms cap would also cap Retry-After
				d.Policy.MaxBackoff = tt.maxBackoff
			}
			enqueue(t, o, d)
			start(t, o)
			waitIdle(t, o, 10*time.Second)
			hits := s.hitsFor("ra")
			if len(hits) != 2 {
				t.Fatalf("%d requests, want 2", len(hits))
			}
			gap := hits[1].at.Sub(hits[0].at)
			if gap < tt.minGap || gap > tt.maxGap {
				t.Errorf("gap between attempts %s, want within [%s, %s]", gap, tt.minGap, tt.maxGap)
			}
		})
	}
}

// TestJudgeStatus pins which answers count against an origin's breaker: a
// 4xx other than 408/429 shows the origin is up (one plugin's revoked hook
// URL must not pause other plugins' deliveries to the same host).
func TestJudgeStatus(t *testing.T) {
	tests := []struct {
		code int
		want verdict
	}{
		{500, failing}, {502, failing}, {503, failing}, {504, failing},
		{408, failing}, {429, failing},
		{400, healthy}, {401, healthy}, {404, healthy}, {410, healthy},
		{301, healthy}, // a redirect not followed (e.g. 304) still shows a live origin
	}
	for _, tt := range tests {
		if got := judgeStatus(tt.code); got != tt.want {
			t.Errorf("judgeStatus(%d) = %v, want %v", tt.code, got, tt.want)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 4, 22, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		in     string
		want   time.Duration
		wantOK bool
	}{
		{"120", 2 * time.Minute, true},
		{" 0 ", 0, true},
		{"Tue, 22 Apr 2025 10:00:30 GMT", 30 * time.Second, true},
		{"Tue, 22 Apr 2025 09:00:00 GMT", 0, true}, // in the past
		{"99999999999999", maxWait, true},          // absurd values are clamped, not overflowed
		{"", 0, false},
		{"-5", 0, false},
		{"soon", 0, false},
	}
	for _, tt := range tests {
		got, ok := parseRetryAfter(tt.in, now)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("parseRetryAfter(%q) = %s, %v; want %s, %v", tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestRetryWait(t *testing.T) {
	def := Policy{}
	if err := def.normalize(); err != nil {
		t.Fatal(err)
	}
	sw := Policy{Schedule: []time.Duration{5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour}}
	if err := sw.normalize(); err != nil {
		t.Fatal(err)
	}
	capped := def
	capped.MaxBackoff = time.Second
	o := &Outbox{opts: Options{Jitter: 0}}
	tests := []struct {
		name       string
		p          Policy
		failed     int
		retryAfter time.Duration
		want       time.Duration
	}{
		{"1st retry", def, 1, 0, 300 * time.Millisecond},
		{"2nd retry", def, 2, 0, 600 * time.Millisecond},
		{"3rd retry", def, 3, 0, 1200 * time.Millisecond},
		{"4th retry", def, 4, 0, 2400 * time.Millisecond},
		{"5th retry", def, 5, 0, 4800 * time.Millisecond},
		{"doubling capped", def, 40, 0, time.Hour},
		{"lower cap", capped, 4, 0, time.Second},
		{"schedule first", sw, 1, 0, 5 * time.Second},
		{"schedule last exceeds MaxBackoff", sw, 7, 0, 10 * time.Hour},
		{"Retry-After lengthens", def, 1, 10 * time.Second, 10 * time.Second},
		{"Retry-After never shortens", def, 5, time.Second, 4800 * time.Millisecond},
		{"Retry-After capped at MaxBackoff", def, 1, 2 * time.Hour, time.Hour},
		{"Retry-After capped at the scheduled wait when longer", sw, 7, 20 * time.Hour, 10 * time.Hour},
	}
	for _, tt := range tests {
		if got := o.retryWait(tt.p, tt.failed, tt.retryAfter); got != tt.want {
			t.Errorf("%s: retryWait = %s, want %s", tt.name, got, tt.want)
		}
	}

	o.opts.Jitter = 0.2
	seen := map[time.Duration]bool{}
	for range 200 {
		w := o.retryWait(def, 1, 0)
		if w < 240*time.Millisecond || w > 360*time.Millisecond {
			t.Fatalf("jittered wait %s outside [240ms, 360ms]", w)
		}
		seen[w] = true
	}
	if len(seen) < 10 {
		t.Errorf("jitter produced only %d distinct waits in 200 draws", len(seen))
	}
}

func TestOpenAndLifecycle(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "nested", "deeper", "outbox.db")
	o := openAt(t, path, testOptions())

	if _, err := Open(path, testOptions()); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("second Open of the same file = %v, want an in-use error", err)
	}
	if _, err := Open("", testOptions()); err == nil {
		t.Error("Open with an empty path succeeded")
	}
	bad := testOptions()
	bad.Jitter = 1.5
	if _, err := Open(filepath.Join(dir, "other.db"), bad); err == nil || !strings.Contains(err.Error(), "jitter") {
		t.Errorf("Open with jitter 1.5 = %v, want a jitter error", err)
	}

	s := okSink(t)
	enqueue(t, o, s.delivery("a", "r"))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := o.WaitIdle(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitIdle without Run = %v, want deadline exceeded", err)
	}

	stop := start(t, o)
	waitIdle(t, o, 5*time.Second)
	if err := o.Close(); err == nil {
		t.Error("Close while Run is running succeeded")
	}
	second := make(chan struct{})
	go func() {
		o.Run(context.Background()) // must return at once: one Run at a time
		close(second)
	}()
	select {
	case <-second:
	case <-time.After(5 * time.Second):
		t.Fatal("a second concurrent Run did not return")
	}
	stop()
	if err := o.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := o.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := o.Enqueue(context.Background(), []Delivery{s.delivery("b", "r")}); !errors.Is(err, ErrClosed) {
		t.Errorf("Enqueue after Close = %v, want ErrClosed", err)
	}
	if _, err := o.DeadLetters(time.Time{}, 0); !errors.Is(err, ErrClosed) {
		t.Errorf("DeadLetters after Close = %v, want ErrClosed", err)
	}
	if err := o.Replay(context.Background(), "a"); !errors.Is(err, ErrClosed) {
		t.Errorf("Replay after Close = %v, want ErrClosed", err)
	}
	ran := make(chan struct{})
	go func() {
		o.Run(context.Background())
		close(ran)
	}()
	select {
	case <-ran:
	case <-time.After(5 * time.Second):
		t.Fatal("Run after Close did not return")
	}
	cctx, ccancel := context.WithCancel(context.Background())
	ccancel()
	if err := o.Enqueue(cctx, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Enqueue with a cancelled context = %v, want context.Canceled", err)
	}
}

// TestBodiesStayOnDisk: a pending delivery's body is not held in memory but
// read when it is sent, signed as it was stored; a record an earlier version
// stored with its body inside is sent the same; a dead letter keeps its
// body; and no body outlives its delivery.
func TestBodiesStayOnDisk(t *testing.T) {
	tests := []struct {
		name   string
		inline bool // stored by an earlier version, body inside the record
		status int  // the sink's answer
	}{
		{"enqueued, delivered", false, http.StatusOK},
		{"stored inline, delivered", true, http.StatusOK},
		{"enqueued, dead-lettered", false, http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := testOptions()
			opts.Secrets = secrets{"plug/meet": "meet-api-key"}
			s := newSink(t, func(http.ResponseWriter, *http.Request, int) int { return tt.status })
			d := s.delivery("body-"+tt.name, "room")
			d.Sign = &Sign{Scheme: SchemeHMACSHA256Hex, Secret: "meet"}
			d.Policy.Attempts = 1
			d.CreatedAt = time.UnixMilli(1_800_000_000_000)
			path := filepath.Join(t.TempDir(), "outbox.db")
			o := openAt(t, path, opts)
			if tt.inline {
				r := record{Delivery: d}
				r.Delivery.Method, r.Delivery.Policy.Timeout = http.MethodPost, 5*time.Second
				if err := o.db.Update(func(tx *bolt.Tx) error {
					seq, err := tx.Bucket(bucketPending).NextSequence()
					if err != nil {
						return err
					}
					if err := putRecord(tx.Bucket(bucketPending), u64(seq), &r); err != nil {
						return err
					}
					return tx.Bucket(bucketPendingIDs).Put([]byte(d.ID), u64(seq))
				}); err != nil {
					t.Fatal(err)
				}
				if err := o.Close(); err != nil {
					t.Fatal(err)
				}
				o = openAt(t, path, opts)
			} else {
				enqueue(t, o, d)
				o.mu.Lock()
				for _, q := range o.sched.queues {
					for _, it := range q.items {
						if it.rec.Delivery.Body != nil {
							t.Errorf("delivery %s holds its body in memory", it.rec.Delivery.ID)
						}
					}
				}
				o.mu.Unlock()
			}
			stop := start(t, o)
			waitIdle(t, o, 5*time.Second)
			stop()

			hits := s.hitsFor(d.ID)
			if len(hits) != 1 {
				t.Fatalf("%d requests with the body %q, want 1", len(hits), d.ID)
			}
			want := http.Header{}
			if err := SignRequest(want, &d, []byte("meet-api-key"), d.CreatedAt); err != nil {
				t.Fatal(err)
			}
			if got := hits[0].header.Get("X-Signature"); got != want.Get("X-Signature") {
				t.Errorf("X-Signature %q, want %q, over the stored body", got, want.Get("X-Signature"))
			}
			if tt.status != http.StatusOK {
				dl, err := o.DeadLetter(d.ID)
				if err != nil || string(dl.Delivery.Body) != d.ID {
					t.Errorf("dead letter = %+v, %v; want the body %q", dl.Delivery, err, d.ID)
				}
			}
			if err := o.db.View(func(tx *bolt.Tx) error {
				if n := tx.Bucket(bucketBodies).Stats().KeyN; n != 0 {
					t.Errorf("%d bodies left after the delivery finished", n)
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestRecordsInMemory: past Options.RecordsInMemory, pending deliveries
// keep only their place in the queues and read their record when attempted:
// retries count their attempts from the stored record, and one whose record
// is gone leaves the queue without being sent.
func TestRecordsInMemory(t *testing.T) {
	withRecord := func(o *Outbox) (n int) {
		o.mu.Lock()
		defer o.mu.Unlock()
		for _, q := range o.sched.queues {
			for _, it := range q.items {
				if it.rec != nil {
					n++
				}
			}
		}
		return n
	}
	t.Run("attempts counted from the stored record", func(t *testing.T) {
		opts := testOptions()
		opts.RecordsInMemory = 2
		opts.BreakerThreshold = 1000 // the breaker would hold the queue; this test is about records
		o := openOutbox(t, opts)
		s := newSink(t, func(_ http.ResponseWriter, _ *http.Request, nth int) int {
			if nth < 2 {
				return http.StatusServiceUnavailable
			}
			return http.StatusOK // a third attempt would succeed
		})
		var ids []string
		for i := range 10 {
			d := s.delivery(fmt.Sprintf("d%d", i), fmt.Sprintf("room-%d", i%3))
			d.Policy.Attempts = 2
			enqueue(t, o, d)
			ids = append(ids, d.ID)
		}
		if n := withRecord(o); n != 2 {
			t.Fatalf("%d pending deliveries hold their record, want 2", n)
		}
		start(t, o)
		waitIdle(t, o, 10*time.Second)
		for _, id := range ids {
			if n := len(s.hitsFor(id)); n != 2 {
				t.Errorf("%s: %d attempts, want the policy's 2", id, n)
			}
			if dl, err := o.DeadLetter(id); err != nil || dl.Attempts != 2 {
				t.Errorf("%s: dead letter %+v, %v; want one after 2 attempts", id, dl, err)
			}
		}
		if n := o.Pending(); n != 0 {
			t.Errorf("%d still pending", n)
		}
	})
	t.Run("record gone", func(t *testing.T) {
		o := openOutbox(t, testOptions()) // one record in memory: the second delivery's is read when attempted
		s := okSink(t)
		enqueue(t, o, s.delivery("kept", "r1"), s.delivery("gone", "r2"))
		if err := o.db.Update(func(tx *bolt.Tx) error {
			return removePending(tx, binary.BigEndian.Uint64(tx.Bucket(bucketPendingIDs).Get([]byte("gone"))), "gone")
		}); err != nil {
			t.Fatal(err)
		}
		start(t, o)
		waitIdle(t, o, 5*time.Second)
		if len(s.hitsFor("kept")) != 1 || len(s.hitsFor("gone")) != 0 {
			t.Errorf("kept sent %d times, gone %d; want 1 and 0", len(s.hitsFor("kept")), len(s.hitsFor("gone")))
		}
	})
}
