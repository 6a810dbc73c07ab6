package deliver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/lkedge/lkedge/host/egress"
	"github.com/lkedge/lkedge/host/internal/reuse"
	bolt "go.etcd.io/bbolt"
)

const (
	// maxResponseBody bounds how much of a response is read: enough to let
	// the connection be reused, never a way for a destination to make us
	// buffer a lot.
	maxResponseBody = 64 << 10
	// maxErrorSnippet is how much of a failed response's body is kept in
	// LastError to help an operator see why.
	maxErrorSnippet = 200
	// unreadableWait is how long a delivery whose record or body could not
	// be read waits before it is tried again.
	unreadableWait = time.Second
	pruneInterval  = time.Minute
)

// deliveredMark is a success waiting for flushMarks.
type deliveredMark struct {
	seq uint64
	id  string
	at  time.Time
}

// result is what one attempt produced.
type result struct {
	status     int
	err        error // nil means delivered
	retryAfter time.Duration
	verdict    verdict
	refused    bool // egress policy refused it: final at once
	aborted    bool // Run's context ended during the attempt
}

// Run sends pending deliveries until ctx ends, resuming what was pending at
// Open. It returns after every in-flight attempt has finished; an attempt
// cut short by ctx is not charged and is resent by the next Run. Only one
// Run may be active at a time.
func (o *Outbox) Run(ctx context.Context) {
	o.closeMu.RLock()
	if o.closed {
		o.closeMu.RUnlock()
		o.log.Error("outbox: Run called after Close")
		return
	}
	o.mu.Lock()
	if o.running {
		o.mu.Unlock()
		o.closeMu.RUnlock()
		o.log.Error("outbox: Run called while another Run is active")
		return
	}
	o.running = true
	o.mu.Unlock()
	o.closeMu.RUnlock()

	defer func() {
		o.wg.Wait()
		o.flushMarks()
		o.mu.Lock()
		o.running = false
		o.mu.Unlock()
	}()

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	prune := time.NewTicker(pruneInterval)
	defer prune.Stop()
	marks := time.NewTicker(o.opts.MarkInterval)
	defer marks.Stop()
	for {
		o.mu.Lock()
		starts, wake := o.sched.next(time.Now())
		o.mu.Unlock()
		for _, st := range starts {
			o.wg.Add(1)
			reuse.Go(func() { o.attempt(ctx, st) })
		}
		var fire <-chan time.Time
		if !wake.IsZero() {
			timer.Reset(time.Until(wake))
			fire = timer.C
		}
		select {
		case <-ctx.Done():
			return
		case <-o.wake:
		case <-fire:
		case <-marks.C:
			o.flushMarks()
		case <-prune.C:
			if err := o.prune(); err != nil {
				o.log.Error("outbox: prune delivered ids", "error", err)
			}
		}
	}
}

// attempt makes one attempt at st's delivery, persists its consequence and
// tells the scheduler.
func (o *Outbox) attempt(ctx context.Context, st launch) {
	defer o.wg.Done()
	defer o.nudge()
	it := st.it
	stored, body, err := o.readPending(it.seq, it.rec)
	if err != nil {
		o.unreadable(st, err)
		return
	}
	d := &stored.Delivery
	log := o.log.With(append(logAttrs(d), "destination", it.origin)...)

	res := o.send(ctx, stored, body)
	now := o.opts.Now()
	mono := time.Now()

	if res.aborted {
		o.mu.Lock()
		o.sched.finish(st, neutral, outAborted, time.Time{}, mono)
		o.mu.Unlock()
		log.Debug("delivery attempt interrupted by shutdown; it will be resent")
		return
	}

	o.m.attempts.WithLabelValues(d.Plugin).Inc()
	rec := *stored
	rec.Attempts++
	out := outFinished
	var due time.Time
	var dead bool
	var persist func(tx *bolt.Tx) error

	switch {
	case res.err == nil:
		o.marksMu.Lock()
		o.marks = append(o.marks, deliveredMark{seq: it.seq, id: d.ID, at: now})
		o.marksMu.Unlock()
		o.m.deliveries.WithLabelValues(d.Plugin, outcomeDelivered).Inc()
		log.Debug("delivered", "attempt", rec.Attempts, "status", res.status)
	case res.refused || rec.Attempts >= d.Policy.Attempts:
		dead = true
		rec.LastError, rec.LastStatus, rec.DeadAt = res.err.Error(), res.status, now
		persist = func(tx *bolt.Tx) error { return markDead(tx, it.seq, &rec) }
		if res.refused {
			o.m.deliveries.WithLabelValues(d.Plugin, outcomeRefused).Inc()
			log.Error("delivery refused by egress policy; dead-lettered", "error", rec.LastError)
		} else {
			o.m.deliveries.WithLabelValues(d.Plugin, outcomeDead).Inc()
			log.Error("delivery failed for the last time; dead-lettered",
				"attempts", rec.Attempts, "status", res.status, "error", rec.LastError)
		}
	default:
		out = outRetry
		wait := o.retryWait(d.Policy, rec.Attempts, res.retryAfter)
		due = mono.Add(wait)
		rec.LastError, rec.LastStatus, rec.NextAt = res.err.Error(), res.status, now.Add(wait)
		persist = func(tx *bolt.Tx) error { return putRecord(tx.Bucket(bucketPending), u64(it.seq), &rec) }
		o.m.deliveries.WithLabelValues(d.Plugin, outcomeRetried).Inc()
		log.Warn("delivery attempt failed; will retry",
			"attempt", rec.Attempts, "of", d.Policy.Attempts, "status", res.status, "error", rec.LastError, "retry_in", wait)
	}

	// Keep going in memory even if the write fails: stalling the queue would
	// hurt more, and a restart at worst resends with the same
	// Idempotency-Key. A delivery without its record in memory reads the
	// old attempt count again, so a failed write costs it at most one more
	// attempt. Batch shares the fsync with concurrent results (persist is
	// idempotent, as Batch may run it twice).
	if persist != nil {
		if err := o.db.Batch(persist); err != nil {
			log.Error("outbox: persist delivery state", "error", err)
		}
	}

	o.mu.Lock()
	if out == outRetry && it.rec != nil {
		*it.rec = rec // else the stored record, just written, has it
	}
	if dead {
		o.sched.dead++
	}
	change := o.finishLocked(st, res.verdict, out, due, mono)
	o.mu.Unlock()
	o.logBreaker(it.origin, change)
}

// finishLocked ends an attempt in the scheduler, publishes the new state
// and, when the delivery left its queue, wakes whoever waits for the
// outbox to change. o.mu must be held.
func (o *Outbox) finishLocked(st launch, v verdict, out outcome, due, now time.Time) breakerChange {
	change := o.sched.finish(st, v, out, due, now)
	o.publishLocked()
	if out == outFinished {
		close(o.changed)
		o.changed = make(chan struct{})
	}
	return change
}

// unreadable handles a delivery whose record or body could not be read
// for an attempt: one whose record is gone leaves the queue (nothing is left to
// send), any other is tried again after a while, uncharged.
func (o *Outbox) unreadable(st launch, err error) {
	gone := errors.Is(err, errRecordGone)
	o.log.Error("outbox: reading a pending delivery's record failed", "seq", st.it.seq, "gone", gone, "error", err)
	out, due := outRetry, time.Now().Add(unreadableWait)
	if gone {
		out = outFinished
	}
	o.mu.Lock()
	o.finishLocked(st, neutral, out, due, time.Now())
	o.mu.Unlock()
}

// flushMarks removes the records of the deliveries that succeeded since the
// last flush, all in one commit. Until then a record stays pending in the
// file, which also keeps Enqueue from taking its id again.
func (o *Outbox) flushMarks() {
	marks := o.takeMarks()
	if len(marks) == 0 {
		return
	}
	err := o.db.Update(func(tx *bolt.Tx) error { return applyMarks(tx, marks) })
	if err != nil {
		o.log.Error("outbox: recording delivered requests failed; they are sent again after a restart", "count", len(marks), "error", err)
	}
}

// takeMarks hands the successes not yet recorded to a commit that records
// them: flushMarks's, or one that is made anyway (Enqueue's), so that under
// load they cost no commit of their own.
func (o *Outbox) takeMarks() []deliveredMark {
	o.marksMu.Lock()
	defer o.marksMu.Unlock()
	marks := o.marks
	o.marks = nil
	return marks
}

// returnMarks gives back the successes of a commit that failed, for the
// next one.
func (o *Outbox) returnMarks(marks []deliveredMark) {
	if len(marks) == 0 {
		return
	}
	o.marksMu.Lock()
	defer o.marksMu.Unlock()
	o.marks = append(o.marks, marks...)
}

func applyMarks(tx *bolt.Tx, marks []deliveredMark) error {
	for _, m := range marks {
		if err := markDelivered(tx, m.seq, m.id, m.at); err != nil {
			return err
		}
	}
	return nil
}

func (o *Outbox) logBreaker(origin string, change breakerChange) {
	switch change {
	case breakerOpened:
		o.log.Warn("outbox: circuit breaker opened; pausing deliveries to this destination",
			"destination", origin, "cooldown", o.opts.BreakerCooldown)
	case breakerReopened:
		o.log.Warn("outbox: circuit breaker probe failed; destination stays paused", "destination", origin)
	case breakerClosed:
		o.log.Info("outbox: circuit breaker closed; destination recovered", "destination", origin)
	}
}

// send performs one HTTP attempt at the delivery of r with body.
func (o *Outbox) send(ctx context.Context, r *record, body []byte) result {
	d := r.Delivery
	d.Body = body
	ac, err := o.allowClient(d.Policy.Allow)
	if err != nil {
		// Validated at Enqueue; only a stored record from an incompatible
		// version could get here, and retrying cannot fix it.
		return result{err: err, refused: true}
	}
	actx, cancel := context.WithTimeout(ctx, d.Policy.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, d.Method, d.URL, bytes.NewReader(d.Body))
	if err != nil {
		return result{err: fmt.Errorf("build request: %w", err), refused: true}
	}
	for _, h := range d.Header {
		req.Header.Add(h[0], h[1])
	}
	if d.IdempotencyKey != "" {
		req.Header.Set("Idempotency-Key", d.IdempotencyKey)
	}
	if d.Sign != nil {
		if err := o.sign(req.Header, &d); err != nil {
			// Not the destination's fault (neutral) and fixable by an
			// operator, so it is retried like a failure.
			return result{err: err}
		}
	}

	began := time.Now()
	resp, err := ac.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return result{aborted: true}
		}
		o.m.attemptSeconds.Observe(time.Since(began).Seconds())
		if errors.Is(err, egress.ErrNotAllowed) || errors.Is(err, egress.ErrForbiddenAddress) {
			return result{err: describe(err), refused: true}
		}
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("no response within %s: %w", d.Policy.Timeout, context.DeadlineExceeded)
		}
		return result{err: describe(err), verdict: failing}
	}
	snippet := drain(resp)
	o.m.attemptSeconds.Observe(time.Since(began).Seconds())
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return result{status: resp.StatusCode, verdict: healthy}
	}
	res := result{status: resp.StatusCode, err: errors.New(statusText(resp.StatusCode, snippet)), verdict: judgeStatus(resp.StatusCode)}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		res.retryAfter, _ = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	}
	return res
}

// judgeStatus says what a non-2xx status means for the origin's breaker. A
// 4xx other than 408/429 proves the origin is up and answering (a revoked
// hook URL of one plugin must not pause everyone's deliveries to that host).
func judgeStatus(code int) verdict {
	if code >= 500 || code == http.StatusRequestTimeout || code == http.StatusTooManyRequests {
		return failing
	}
	return healthy
}

func (o *Outbox) sign(h http.Header, d *Delivery) error {
	if o.opts.Secrets == nil {
		return fmt.Errorf("sign: secret %q: no secret store configured", d.Sign.Secret)
	}
	secret, err := o.opts.Secrets.Secret(d.Plugin, d.Sign.Secret)
	if err != nil {
		return fmt.Errorf("sign: secret %q: %w", d.Sign.Secret, err)
	}
	return SignRequest(h, d, secret, o.opts.Now())
}

// describe drops the *url.Error wrapper, whose text repeats the full URL: a
// hook URL's path is often itself a secret and must not reach logs or the
// dead-letter store.
func describe(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// drain reads (at most maxResponseBody of) the body so the connection can be
// reused, closes it, and returns the start of it.
func drain(resp *http.Response) string {
	defer resp.Body.Close()
	head := make([]byte, maxErrorSnippet)
	n, _ := io.ReadFull(resp.Body, head)
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseBody-int64(n)))
	return strings.TrimSpace(strings.ToValidUTF8(string(head[:n]), "\uFFFD"))
}

func statusText(code int, snippet string) string {
	s := "HTTP " + strconv.Itoa(code)
	if t := http.StatusText(code); t != "" {
		s += " " + t
	}
	if snippet != "" {
		s += ": " + strconv.Quote(snippet)
	}
	return s
}

// parseRetryAfter reads a Retry-After value: delay-seconds or an HTTP-date.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseUint(v, 10, 64); err == nil {
		return time.Duration(min(secs, uint64(maxWait/time.Second))) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(t.Sub(now), 0), maxWait), true
	}
	return 0, false
}

// retryWait is how long to wait after the failed-th failed attempt.
// Explicit schedules are used as given; the exponential backoff is capped at
// MaxBackoff. Jitter is applied to the computed wait, and a server's
// Retry-After can only lengthen it, up to MaxBackoff (or the scheduled wait
// if that is longer).
func (o *Outbox) retryWait(p Policy, failed int, retryAfter time.Duration) time.Duration {
	var w, ceiling time.Duration
	if n := len(p.Schedule); n > 0 {
		w = p.Schedule[min(failed, n)-1]
		ceiling = max(p.MaxBackoff, w)
	} else {
		w = p.Backoff
		for i := 1; i < failed && w < p.MaxBackoff; i++ {
			w *= 2
		}
		w = min(w, p.MaxBackoff)
		ceiling = p.MaxBackoff
	}
	if j := o.opts.Jitter; j > 0 {
		w = time.Duration(float64(w) * (1 - j + 2*j*rand.Float64()))
	}
	return max(w, min(retryAfter, ceiling))
}

// logAttrs are the attributes every log line about a delivery carries.
func logAttrs(d *Delivery) []any {
	return []any{"event_id", d.EventID, "plugin", d.Plugin, "delivery", d.ID}
}
