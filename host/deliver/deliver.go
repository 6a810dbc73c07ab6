// Package deliver sends the HTTP requests that plugins ask for, reliably.
//
// Plugins return declarative requests; the host owns getting them to their
// destination. Enqueue stores them in a bbolt outbox and returns only after
// fsync, so an accepted delivery survives a crash. Run sends them with
// retries and backoff, keeps deliveries to one (plugin, origin, resource)
// strictly in order (as LiveKit's own per-resource webhook queues do), stops
// hammering a failing origin with a circuit breaker without letting it slow
// other origins, signs at send time with secrets the plugin only names, and
// moves what cannot be delivered to a dead-letter bucket that operators can
// list and replay.
package deliver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lkedge/lkedge/host/egress"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

const (
	defaultWorkers          = 16
	defaultPerDestination   = 4
	defaultMarkInterval     = 100 * time.Millisecond
	defaultRecordsInMemory  = 4096
	defaultJitter           = 0.2
	defaultBreakerThreshold = 5
	defaultBreakerCooldown  = 30 * time.Second
	defaultDoneWindow       = 10 * time.Minute
	defaultClients          = 64

	defaultAttempts   = 6
	defaultBackoff    = 300 * time.Millisecond
	defaultMaxBackoff = time.Hour
	defaultTimeout    = 5 * time.Second
	defaultMethod     = "POST"

	// maxWait bounds every configured duration so that doubling and jitter
	// arithmetic cannot overflow and a typo cannot park a delivery for years.
	maxWait = 30 * 24 * time.Hour
	// maxIDLen keeps ids far below bbolt's key limit so a Put inside a
	// shared batch cannot fail on key size.
	maxIDLen = 1024
	// openTimeout makes a second process using the same file fail fast
	// instead of blocking on bbolt's lock.
	openTimeout = time.Second
)

// ErrNotFound is returned (wrapped) when no dead letter has the given id.
var ErrNotFound = errors.New("dead letter not found")

// ErrClosed is returned (wrapped) by methods called after Close.
var ErrClosed = errors.New("outbox closed")

// Delivery is one outbound HTTP request a plugin asked for.
type Delivery struct {
	// ID is stable and unique ("<eventID>/<plugin>/<n>"); Enqueue is
	// idempotent on it, so replaying an event after a crash cannot send
	// twice.
	ID       string
	Plugin   string      // the plugin that asked; labels metrics, keys secrets and ordering
	EventID  string      // the LiveKit event that caused it, for logs and tracing
	Resource string      // ordering key: a room or an egress
	Method   string      // default POST
	URL      string      // http or https, and allowed by Policy.Allow
	Header   [][2]string // in order; a name may repeat
	Body     []byte      // sent as is
	// IdempotencyKey is sent as the Idempotency-Key header unless empty; for
	// standard-webhooks signing it is also the webhook-id.
	IdempotencyKey string
	Sign           *Sign     // nil = unsigned
	Policy         Policy    // retries, timeout and allowed destinations
	CreatedAt      time.Time // set by Enqueue if zero
}

// Sign asks the host to sign at send time with a secret the plugin only
// names, so plugins never hold secrets and stored deliveries carry no
// signature that could leak or go stale.
type Sign struct {
	Scheme string // SchemeHMACSHA256Hex or SchemeStandardWebhooks
	Secret string // secret name, resolved at send time through Options.Secrets
	// The remaining fields apply to hmac-sha256-hex only. Header and
	// TimestampHeader default to "X-Signature" and "X-Timestamp"; Template
	// defaults to "{timestamp}.{body}"; Timestamp (decimal) defaults to
	// CreatedAt in Unix milliseconds, so every retry carries the same
	// timestamp and signature, as OpenVidu Meet does.
	Header, TimestampHeader, Template, Timestamp string
}

// Policy is how hard to try. Zero fields take the defaults.
type Policy struct {
	Attempts   int           // total attempts, default 6
	Backoff    time.Duration // first retry wait, default 300ms, doubling each retry
	MaxBackoff time.Duration // cap of the doubling and of Retry-After, default 1h
	// Schedule, if set, is the explicit list of waits between attempts (then
	// Attempts is len(Schedule)+1), e.g. Standard Webhooks'
	// 5s, 5m, 30m, 2h, 5h, 10h, 10h.
	Schedule []time.Duration
	Timeout  time.Duration // per attempt, default 5s
	Allow    []string      // egress allow-list entries (see package egress)
}

// Secrets resolves secret names at send time.
type Secrets interface {
	Secret(plugin, name string) ([]byte, error)
}

// Options tunes an Outbox. The zero value is ready for production use.
type Options struct {
	Workers        int                   // concurrent sends, default 16
	PerDestination int                   // max concurrent sends to one origin, default 4
	Secrets        Secrets               // resolves Sign.Secret names; nil fails signed deliveries
	Logger         *slog.Logger          // default slog.Default()
	Registerer     prometheus.Registerer // nil = metrics are not registered
	// Now is the wall clock for recorded times (CreatedAt, DeadAt, the done
	// window, webhook-timestamp). Waits are timed with the real monotonic
	// clock regardless, so a test clock cannot stall retries.
	Now func() time.Time
	// Jitter multiplies computed waits by a random factor in [1-j, 1+j] so
	// that retries after a shared outage do not arrive in lockstep. 0 means
	// the default 0.2; a negative value disables jitter; at most 1.
	Jitter           float64
	BreakerThreshold int           // consecutive failed attempts that open an origin, default 5
	BreakerCooldown  time.Duration // first open period, default 30s, doubling up to 5 min
	// DoneWindow is how long delivered ids are remembered, so that a
	// re-enqueue after a crash-replay does not resend; default 10 min.
	DoneWindow time.Duration
	// MarkInterval is how long a successful delivery may wait before its
	// record leaves the file: successes are recorded together, not each in
	// an fsync'd commit of its own. A crash within it only means the
	// delivery is sent once more, with the same idempotency key, as
	// at-least-once delivery allows. Enqueue's commits take the waiting
	// successes along, so under load they cost no commit of their own.
	// Default 100 ms.
	MarkInterval time.Duration
	// RecordsInMemory is how many pending deliveries keep their stored
	// record in memory; the others keep only their place in the queues
	// (about 100 bytes) and read the record when they are attempted. It
	// bounds what a dead destination on a day-long retry schedule costs in
	// memory. Default 4096; tests set 1 to exercise both kinds.
	RecordsInMemory int
	// Clients is how many HTTP clients, one per distinct allow-list with its
	// own connection pool, are kept; the least recently used beyond it is
	// dropped and its idle connections closed. Default 64.
	Clients int
}

func (opts Options) withDefaults() (Options, error) {
	if opts.Workers <= 0 {
		opts.Workers = defaultWorkers
	}
	if opts.PerDestination <= 0 {
		opts.PerDestination = defaultPerDestination
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	switch {
	case opts.Jitter == 0:
		opts.Jitter = defaultJitter
	case opts.Jitter < 0:
		opts.Jitter = 0
	case opts.Jitter > 1:
		return opts, fmt.Errorf("jitter %v is more than 1", opts.Jitter)
	}
	if opts.BreakerThreshold <= 0 {
		opts.BreakerThreshold = defaultBreakerThreshold
	}
	if opts.BreakerCooldown <= 0 {
		opts.BreakerCooldown = defaultBreakerCooldown
	}
	if opts.DoneWindow <= 0 {
		opts.DoneWindow = defaultDoneWindow
	}
	if opts.MarkInterval <= 0 {
		opts.MarkInterval = defaultMarkInterval
	}
	if opts.RecordsInMemory <= 0 {
		opts.RecordsInMemory = defaultRecordsInMemory
	}
	if opts.Clients <= 0 {
		opts.Clients = defaultClients
	}
	return opts, nil
}

// DeadLetter is a delivery that was given up, with why.
type DeadLetter struct {
	Delivery   Delivery  // as enqueued, with defaults filled in
	Attempts   int       // attempts made
	LastError  string    // why the last attempt failed
	LastStatus int       // HTTP status of the last attempt, 0 if none was received
	DeadAt     time.Time // when it was given up (Options.Now)
}

// Outbox is the durable queue of deliveries and the sender working it off.
// It is safe for concurrent use.
type Outbox struct {
	db   *bolt.DB
	path string
	opts Options
	log  *slog.Logger
	m    *metrics

	// closeMu orders every database use against Close.
	closeMu sync.RWMutex
	closed  bool

	// clients caches an allow-list's parsed form and client by the list,
	// so deliveries with the same list share a connection pool.
	clients *lru.Cache[string, *allowClient]
	// egressOpts lets in-package tests inject a resolver.
	egressOpts []egress.Option

	wake chan struct{} // nudges Run after Enqueue, Replay or a finished attempt
	wg   sync.WaitGroup

	// marksMu guards marks: successful deliveries whose record is not yet
	// removed from the file (see flushMarks).
	marksMu sync.Mutex
	marks   []deliveredMark

	mu      sync.Mutex // guards the scheduling state below
	sched   scheduler
	running bool
	changed chan struct{} // closed and replaced whenever deliveries finish (WaitIdle)
}

// allowClient is a parsed allow-list and the client bound to it, cached per
// distinct list so connection pools are shared.
type allowClient struct {
	allow  *egress.Allowlist
	client *http.Client
}

// Open opens (creating it and its parent directories if needed) the outbox
// file at path and loads the deliveries still pending, which Run will
// resume.
func Open(path string, opts Options) (*Outbox, error) {
	if path == "" {
		return nil, errors.New("outbox: open: empty path")
	}
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("outbox: options: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("outbox: create directory for %s: %w", path, err)
	}
	// The freelist is not written on every commit (bbolt rebuilds it by a
	// scan at open, as etcd configures it): fewer pages per fsync'd commit.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: openTimeout, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("outbox %s is in use by another process: %w", path, err)
		}
		return nil, fmt.Errorf("outbox: open %s: %w", path, err)
	}
	// Enqueues and delivery results from many goroutines share one
	// commit (two fsyncs). At a few thousand events per second they arrive
	// one at a time, so the wait for company sets how many share it: 3 ms
	// costs clearly less CPU per delivery than 1 ms (BenchmarkDeliverRate,
	// docs/benchmarks.md), while bbolt's default 10 ms would be most of an
	// event's latency.
	db.MaxBatchDelay = 3 * time.Millisecond
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("outbox: %w", err)
	}
	// A dropped client's connections in use finish their requests; only
	// its idle ones are closed.
	clients, err := lru.NewWithEvict(opts.Clients, func(_ string, ac *allowClient) { ac.client.CloseIdleConnections() })
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("outbox: clients: %w", err)
	}
	o := &Outbox{
		db:      db,
		path:    path,
		opts:    opts,
		log:     opts.Logger,
		m:       m,
		clients: clients,
		wake:    make(chan struct{}, 1),
		changed: make(chan struct{}),
		sched:   newScheduler(opts),
	}
	if err := o.init(); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("outbox: open %s: %w", path, err)
	}
	return o, nil
}

// init creates the buckets, forgets expired done ids and loads the pending
// deliveries in enqueue order.
func (o *Outbox) init() error {
	if err := o.db.Update(createBuckets); err != nil {
		return fmt.Errorf("create buckets: %w", err)
	}
	if err := o.prune(); err != nil {
		return err
	}
	now, mono := o.opts.Now(), time.Now()
	o.mu.Lock()
	defer o.mu.Unlock()
	// Each record is handed to the scheduler as it is read, which keeps
	// only RecordsInMemory of them, so a long backlog is never all in
	// memory at once.
	err := o.db.View(func(tx *bolt.Tx) error {
		o.sched.dead = tx.Bucket(bucketDeadIDs).Stats().KeyN
		return loadPending(tx, o.log, func(it *item) {
			if !it.rec.NextAt.IsZero() {
				// NextAt is wall-clock; convert what is left of the wait
				// to the monotonic clock the scheduler runs on.
				it.due = mono.Add(it.rec.NextAt.Sub(now))
			}
			o.sched.add(it, mono)
		})
	})
	if err != nil {
		return fmt.Errorf("load pending deliveries: %w", err)
	}
	o.publishLocked()
	return nil
}

// Close closes the outbox file. Call it after Run has returned; while Run is
// still running Close refuses, because in-flight attempts still write.
func (o *Outbox) Close() error {
	o.closeMu.Lock()
	defer o.closeMu.Unlock()
	if o.closed {
		return nil
	}
	o.mu.Lock()
	running := o.running
	o.mu.Unlock()
	if running {
		return errors.New("outbox: Close called while Run is running: cancel Run's context and wait for it first")
	}
	o.closed = true
	o.clients.Purge()
	if err := o.db.Close(); err != nil {
		return fmt.Errorf("outbox: close %s: %w", o.path, err)
	}
	return nil
}

// DB is the outbox's bbolt file, for the plugin stage to keep its own
// buckets in, so that its writes share the outbox's commits (and fsyncs).
// Other users must leave the outbox's buckets alone and stop using it
// before Close.
func (o *Outbox) DB() *bolt.DB { return o.db }

// Pending returns the number of deliveries not yet delivered or
// dead-lettered, in-flight ones included.
func (o *Outbox) Pending() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.sched.pending
}

// WaitIdle returns when nothing is pending or in flight, or with ctx's error.
func (o *Outbox) WaitIdle(ctx context.Context) error {
	for {
		o.mu.Lock()
		n, ch := o.sched.pending, o.changed
		o.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("outbox: wait idle with %d pending: %w", n, ctx.Err())
		}
	}
}

// Enqueue durably stores ds: when it returns nil, every delivery is fsync'd
// and will be sent even across a crash. Concurrent callers share commits.
// Deliveries whose id is already pending, dead, or was delivered within
// DoneWindow are skipped. All of ds is validated first; if one is invalid
// the error names it and nothing is stored.
func (o *Outbox) Enqueue(ctx context.Context, ds []Delivery) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("outbox: enqueue: %w", err)
	}
	if len(ds) == 0 {
		return nil
	}
	now := o.opts.Now()
	recs := make([]*record, len(ds))
	for i := range ds {
		d := ds[i]
		// Copy what the caller could still mutate after Enqueue returns
		// and stays in memory; the body is only stored, and bolt copies it
		// when the transaction commits, before Enqueue returns.
		d.Header = append([][2]string(nil), d.Header...)
		d.Policy.Allow = append([]string(nil), d.Policy.Allow...)
		d.Policy.Schedule = append([]time.Duration(nil), d.Policy.Schedule...)
		if d.Sign != nil {
			s := *d.Sign
			d.Sign = &s
		}
		if err := o.validate(&d, now); err != nil {
			return fmt.Errorf("outbox: enqueue: delivery %q: %w", d.ID, err)
		}
		recs[i] = &record{Delivery: d}
	}

	o.closeMu.RLock()
	defer o.closeMu.RUnlock()
	if o.closed {
		return fmt.Errorf("outbox: enqueue: %w", ErrClosed)
	}
	var added []*item
	marks := o.takeMarks()
	err := o.db.Batch(func(tx *bolt.Tx) error {
		// Batch may run this more than once; start from scratch each time.
		added = added[:0]
		var err error
		if added, err = enqueueTx(tx, recs, now, o.opts.DoneWindow, added); err != nil {
			return err
		}
		return applyMarks(tx, marks)
	})
	if err != nil {
		o.returnMarks(marks)
		return fmt.Errorf("outbox: enqueue: %w", err)
	}
	if len(added) < len(recs) {
		stored := make(map[string]bool, len(added))
		for _, it := range added {
			stored[it.rec.Delivery.ID] = true
		}
		for _, r := range recs {
			if !stored[r.Delivery.ID] {
				o.log.Debug("delivery already pending, dead or recently delivered; not enqueued again", logAttrs(&r.Delivery)...)
			}
		}
	}
	o.addItems(added)
	return nil
}

// Unfinished is how many deliveries of the given events are still pending
// (neither delivered nor dead), and a channel closed when a delivery next
// leaves the outbox.
func (o *Outbox) Unfinished(eventIDs []string) (int, <-chan struct{}) {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, id := range eventIDs {
		n += o.sched.byEvent[id]
	}
	return n, o.changed
}

// addItems hands freshly stored items to the scheduler and wakes Run.
func (o *Outbox) addItems(items []*item) {
	if len(items) == 0 {
		return
	}
	mono := time.Now()
	o.mu.Lock()
	for _, it := range items {
		o.sched.add(it, mono)
	}
	o.publishLocked()
	o.mu.Unlock()
	o.nudge()
}

func (o *Outbox) nudge() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// Validate reports why Enqueue would refuse d, or nil if it would store it:
// the id, method, URL, headers, idempotency key, signing, policy and
// allow-list are checked as Enqueue checks them, by the same code. The
// plugin stage checks each request with it as the plugin asks for it, so a
// bad request fails that plugin's call at once instead of the store.
func Validate(d Delivery) error {
	return prepare(&d, func(entries []string) (*egress.Allowlist, error) { return egress.ParseAllowlist(entries) })
}

// validate fills in defaults and rejects what could never be sent, so a bad
// delivery fails the plugin's Enqueue instead of burning retries later.
func (o *Outbox) validate(d *Delivery, now time.Time) error {
	err := prepare(d, func(entries []string) (*egress.Allowlist, error) {
		ac, err := o.allowClient(entries)
		if err != nil {
			return nil, err
		}
		return ac.allow, nil
	})
	if err != nil {
		return err
	}
	if d.CreatedAt.IsZero() {
		d.CreatedAt = now
	}
	return nil
}

// prepare is the one validation of a delivery (Validate, Enqueue): it fills
// in the defaults and rejects what could never be sent; allowlist parses
// the policy's allow-list.
func prepare(d *Delivery, allowlist func([]string) (*egress.Allowlist, error)) error {
	if d.ID == "" {
		return errors.New("empty id")
	}
	if len(d.ID) > maxIDLen {
		return fmt.Errorf("id longer than %d bytes", maxIDLen)
	}
	if d.Method == "" {
		d.Method = defaultMethod
	}
	if !isToken(d.Method) {
		return fmt.Errorf("invalid method %q", d.Method)
	}
	u, err := url.Parse(d.URL)
	if err != nil {
		return fmt.Errorf("invalid URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("URL scheme must be http or https, not %q", u.Scheme)
	}
	if u.Host == "" {
		return errors.New("URL has no host")
	}
	for _, h := range d.Header {
		if !isToken(h[0]) {
			return fmt.Errorf("invalid header name %q", h[0])
		}
		if !validHeaderValue(h[1]) {
			return fmt.Errorf("header %q: value contains control characters", h[0])
		}
	}
	if !validHeaderValue(d.IdempotencyKey) {
		return errors.New("idempotency key contains control characters")
	}
	if err := validateSign(d.Sign); err != nil {
		return err
	}
	if err := d.Policy.normalize(); err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	allow, err := allowlist(d.Policy.Allow)
	if err != nil {
		return err
	}
	return allow.Check(u)
}

func (p *Policy) normalize() error {
	if p.Attempts < 0 {
		return fmt.Errorf("negative attempts %d", p.Attempts)
	}
	for name, v := range map[string]time.Duration{"backoff": p.Backoff, "max backoff": p.MaxBackoff, "timeout": p.Timeout} {
		if v < 0 || v > maxWait {
			return fmt.Errorf("%s %s out of range [0, %s]", name, v, maxWait)
		}
	}
	for i, v := range p.Schedule {
		if v < 0 || v > maxWait {
			return fmt.Errorf("schedule[%d] %s out of range [0, %s]", i, v, maxWait)
		}
	}
	if n := len(p.Schedule); n > 0 {
		if p.Attempts != 0 && p.Attempts != n+1 {
			return fmt.Errorf("attempts %d contradicts a schedule of %d waits (which means %d attempts)", p.Attempts, n, n+1)
		}
		p.Attempts = n + 1
	}
	if p.Attempts == 0 {
		p.Attempts = defaultAttempts
	}
	if p.Backoff == 0 {
		p.Backoff = defaultBackoff
	}
	if p.MaxBackoff == 0 {
		p.MaxBackoff = defaultMaxBackoff
	}
	if p.Timeout == 0 {
		p.Timeout = defaultTimeout
	}
	return nil
}

// isToken reports whether s is an RFC 9110 token (methods, header names).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case isTokenPunct(c):
		default:
			return false
		}
	}
	return true
}

func isTokenPunct(c byte) bool {
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// validHeaderValue rejects control characters (other than tab), which would
// let a plugin split headers.
func validHeaderValue(v string) bool {
	for _, c := range []byte(v) {
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// allowClient returns the cached allow-list and client for entries. Two
// goroutines missing the same list at once may both build one; the later
// replaces the earlier, whose connections close when idle.
func (o *Outbox) allowClient(entries []string) (*allowClient, error) {
	key := strings.Join(entries, "\n")
	if ac, ok := o.clients.Get(key); ok {
		return ac, nil
	}
	a, err := egress.ParseAllowlist(entries, o.egressOpts...)
	if err != nil {
		return nil, err
	}
	ac := &allowClient{allow: a, client: a.Client()}
	o.clients.Add(key, ac)
	return ac, nil
}
