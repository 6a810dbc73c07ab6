// Package journal is lkedge's embedded, durable record of accepted LiveKit
// webhooks.
//
// The HTTP ingest answers 200 only after Append has returned, that is after
// the event has been fsync'd into a bbolt file, and then processes the event
// from this record. When processing finishes it calls Done (or Fail when it
// gives up). If the process crashes in between, Pending returns the records
// that still need processing so they can be replayed at start-up. Event ids
// are remembered for a dedup window so that LiveKit's retries of an event we
// already accepted are acknowledged without being processed twice.
//
// All writes go through a single committer goroutine that folds every request
// queued at that moment into one bbolt transaction (group commit), so one
// fsync covers many webhooks and throughput grows with concurrency instead of
// collapsing under fsync latency.
package journal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

const (
	defaultDedupWindow = 10 * time.Minute
	// openTimeout bounds the wait for bbolt's file lock so that a second
	// process fails fast with a clear error instead of hanging.
	openTimeout   = time.Second
	pruneInterval = time.Minute
	// maxBatch caps how many requests share one transaction, bounding both
	// transaction size and the latency added to the first request.
	maxBatch  = 512
	queueSize = 2 * maxBatch
	// maxPrunePerTx bounds the work a periodic prune adds to a transaction
	// that also carries callers' appends.
	maxPrunePerTx = 4096
	// maxIDLen keeps ids well below bbolt's key limit so a Put can never fail
	// on key size in the middle of a shared transaction.
	maxIDLen = 1024
	// maxReasonLen bounds the failure reason stored with a failed record.
	maxReasonLen = 8 << 10
)

var (
	bucketPending    = []byte("pending")
	bucketFailed     = []byte("failed")
	bucketSeen       = []byte("seen")
	bucketSeenByTime = []byte("seen_by_time")
)

// ErrClosed is returned (wrapped) by every method called after Close, and by
// requests that were still queued when Close ran, so callers can tell an
// orderly shutdown apart from a storage failure.
var ErrClosed = errors.New("journal closed")

// errNotPending is the per-request error of Done and Fail for a seq that is
// not (or no longer) pending.
var errNotPending = errors.New("record is not pending")

// Record is one accepted webhook as recorded. It carries everything needed to
// process the event again after a crash.
type Record struct {
	Seq        uint64    // assigned by Append, increasing
	ID         string    // the LiveKit event id (dedup key)
	ReceivedAt time.Time // millisecond precision is enough
	Body       []byte    // raw webhook body as received (protojson), kept verbatim
}

// FailedRecord is a record whose processing was given up, kept with the
// reason so an operator can inspect (and possibly re-inject) it later.
type FailedRecord struct {
	Record
	Reason   string
	FailedAt time.Time
}

// Options tunes a Journal. The zero value is ready for production use; the
// fields exist mainly so tests can inject a clock and a logger.
type Options struct {
	DedupWindow time.Duration    // how long a seen event id is remembered; default 10 min
	Now         func() time.Time // default time.Now
	Logger      *slog.Logger     // default slog.Default()
}

// Journal is the durable webhook record. It is safe for concurrent use; all
// writes are serialised through one committer goroutine that groups them
// into shared transactions.
type Journal struct {
	db       *bolt.DB
	path     string
	windowMs int64
	now      func() time.Time
	log      *slog.Logger

	reqs chan *request
	quit chan struct{} // closed by Close: stop accepting requests
	done chan struct{} // closed by the committer when it has exited

	closeOnce sync.Once
	closeErr  error
	mu        sync.RWMutex // orders read transactions against closing the DB
	closed    bool

	txs atomic.Uint64 // committed write transactions (test/benchmark hook)

	lazyMu sync.Mutex
	lazy   []uint64      // MarkDone seqs not yet committed
	kick   chan struct{} // wakes the committer for lazy marks
}

type opKind uint8

const (
	opAppend opKind = iota + 1
	opDone
	opFail
	opPrune
)

func (k opKind) String() string {
	switch k {
	case opAppend:
		return "append"
	case opDone:
		return "done"
	case opFail:
		return "fail"
	case opPrune:
		return "prune"
	}
	return fmt.Sprintf("op(%d)", uint8(k))
}

// request is one write waiting for the committer.
type request struct {
	kind   opKind
	ctx    context.Context
	id     string // append
	value  []byte // append: encoded record
	seq    uint64 // done, fail
	reason string // fail
	res    chan result
	// skipped is set by the committer when ctx had ended before the batch
	// was applied.
	skipped bool
}

type result struct {
	seq     uint64 // append: assigned seq
	dup     bool   // append: id already seen
	removed int    // prune: seen ids forgotten
	more    bool   // prune: stopped at the per-transaction cap
	err     error
}

// Open opens (creating if needed) the journal at path. It takes bbolt's
// exclusive file lock with a short timeout, so a second process using the
// same file gets an "in use" error instead of blocking forever. Seen ids
// older than the dedup window are forgotten before Open returns.
func Open(path string, opts Options) (*Journal, error) {
	if path == "" {
		return nil, errors.New("journal: open: empty path")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("journal: create directory for %s: %w", path, err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: openTimeout})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("journal %s is in use by another process: %w", path, err)
		}
		return nil, fmt.Errorf("journal: open %s: %w", path, err)
	}

	window := opts.DedupWindow
	if window <= 0 {
		window = defaultDedupWindow
	}
	j := &Journal{
		db:       db,
		path:     path,
		windowMs: window.Milliseconds(),
		now:      opts.Now,
		log:      opts.Logger,
		reqs:     make(chan *request, queueSize),
		quit:     make(chan struct{}),
		kick:     make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
	if j.now == nil {
		j.now = time.Now
	}
	if j.log == nil {
		j.log = slog.Default()
	}
	j.log = j.log.With("component", "journal", "path", path)

	if err := j.init(); err != nil {
		_ = db.Close()
		return nil, err
	}
	go j.run()
	return j, nil
}

// init creates the buckets and forgets expired ids before the committer
// starts, so a journal reopened after a long downtime starts out small.
func (j *Journal) init() error {
	err := j.db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketPending, bucketFailed, bucketSeen, bucketSeenByTime} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("create bucket %q: %w", name, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("journal: initialise %s: %w", j.path, err)
	}
	total := 0
	for {
		var res result
		err := j.db.Update(func(tx *bolt.Tx) error {
			var err error
			res, err = j.pruneTx(newTxState(tx, j.now()))
			return err
		})
		if err != nil {
			return fmt.Errorf("journal: prune seen ids in %s: %w", j.path, err)
		}
		total += res.removed
		if !res.more {
			break
		}
	}
	if total > 0 {
		j.log.Info("journal: forgot expired event ids at open", "count", total)
	}
	return nil
}

// Append durably records one accepted webhook and returns only after the
// transaction holding it has been fsync'd, so the caller may acknowledge the
// webhook as soon as Append returns without error.
//
// If id was seen within the dedup window (whether its record is pending,
// done or failed), or its record is still pending, Append records nothing and
// returns duplicate=true with a zero Record: the event is already safe.
//
// If ctx ends while waiting for the commit, Append returns ctx's error but the
// record may still have been committed; a retry with the same id then reports
// duplicate=true, which is the correct outcome.
func (j *Journal) Append(ctx context.Context, id string, receivedAt time.Time, body []byte) (rec Record, duplicate bool, err error) {
	switch {
	case id == "":
		return Record{}, false, errors.New("journal: append: empty event id")
	case len(id) > maxIDLen:
		return Record{}, false, fmt.Errorf("journal: append: event id is %d bytes, limit %d", len(id), maxIDLen)
	}
	ms := receivedAt.UnixMilli()
	// Encode here, in the caller's goroutine: it spreads the copying across
	// callers and means the committer never touches the caller's body slice.
	value, bodyOff := encodeRecord(ms, id, body)
	if len(value) > bolt.MaxValueSize {
		return Record{}, false, fmt.Errorf("journal: append event %q: body of %d bytes is too large", id, len(body))
	}
	res := j.submit(ctx, &request{kind: opAppend, id: id, value: value})
	if res.err != nil {
		return Record{}, false, fmt.Errorf("journal: append event %q: %w", id, res.err)
	}
	if res.dup {
		return Record{}, true, nil
	}
	return Record{
		Seq:        res.seq,
		ID:         id,
		ReceivedAt: time.UnixMilli(ms).UTC(),
		Body:       value[bodyOff:len(value):len(value)],
	}, false, nil
}

// Done marks the record's processing as finished and removes it from the
// pending set, so it is not replayed after a restart. The event id stays
// remembered for the dedup window.
func (j *Journal) Done(ctx context.Context, seq uint64) error {
	if res := j.submit(ctx, &request{kind: opDone, seq: seq}); res.err != nil {
		return fmt.Errorf("journal: done seq %d: %w", seq, res.err)
	}
	return nil
}

// markDelay is how long a MarkDone waits for an append to share its commit
// before it is committed on its own.
const markDelay = 5 * time.Millisecond

// MarkDone is Done without waiting: the mark rides on the next commit, at
// most markDelay later, so under load finishing an event costs no fsync of
// its own. If the process dies before that commit, the record is replayed
// after the restart: processing is at least once either way.
func (j *Journal) MarkDone(seq uint64) {
	j.lazyMu.Lock()
	j.lazy = append(j.lazy, seq)
	j.lazyMu.Unlock()
	select {
	case j.kick <- struct{}{}:
	default:
	}
}

// takeLazy returns the pending MarkDone seqs as done requests.
func (j *Journal) takeLazy(batch []*request) []*request {
	j.lazyMu.Lock()
	defer j.lazyMu.Unlock()
	for _, seq := range j.lazy {
		batch = append(batch, &request{kind: opDone, ctx: context.Background(), seq: seq})
	}
	j.lazy = j.lazy[:0]
	return batch
}

// Fail records that processing gave up on the record: it moves from the
// pending set to the failed set together with reason and the current time,
// so it is no longer replayed but is kept for inspection.
func (j *Journal) Fail(ctx context.Context, seq uint64, reason string) error {
	if res := j.submit(ctx, &request{kind: opFail, seq: seq, reason: truncate(reason, maxReasonLen)}); res.err != nil {
		return fmt.Errorf("journal: fail seq %d: %w", seq, res.err)
	}
	return nil
}

// Pending returns the records that were appended but neither Done nor
// Failed, in Seq order: the records to replay at start-up.
//
// A value that cannot be decoded does not hide the others: Pending returns
// every decodable record together with an error naming each bad seq, so the
// caller can replay the rest and Fail the bad ones.
func (j *Journal) Pending() ([]Record, error) {
	var (
		recs []Record
		errs []error
	)
	err := j.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPending)
		if b == nil {
			return fmt.Errorf("bucket %q missing", bucketPending)
		}
		return b.ForEach(func(k, v []byte) error {
			seq, ok := decodeSeqKey(k)
			if !ok {
				errs = append(errs, fmt.Errorf("journal: pending key %x is not an 8-byte seq", k))
				return nil
			}
			rec, err := decodeRecord(seq, v)
			if err != nil {
				errs = append(errs, fmt.Errorf("journal: pending seq %d: %w", seq, err))
				return nil
			}
			recs = append(recs, rec)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("journal: read pending records: %w", err)
	}
	return recs, errors.Join(errs...)
}

// Failed returns the records whose processing was given up, in Seq order.
// Like Pending, it returns the decodable records along with an error naming
// each seq whose value is corrupt.
func (j *Journal) Failed() ([]FailedRecord, error) {
	var (
		recs []FailedRecord
		errs []error
	)
	err := j.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketFailed)
		if b == nil {
			return fmt.Errorf("bucket %q missing", bucketFailed)
		}
		return b.ForEach(func(k, v []byte) error {
			seq, ok := decodeSeqKey(k)
			if !ok {
				errs = append(errs, fmt.Errorf("journal: failed key %x is not an 8-byte seq", k))
				return nil
			}
			rec, err := decodeFailed(seq, v)
			if err != nil {
				errs = append(errs, fmt.Errorf("journal: failed seq %d: %w", seq, err))
				return nil
			}
			recs = append(recs, rec)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("journal: read failed records: %w", err)
	}
	return recs, errors.Join(errs...)
}

// Close stops the committer and closes the file. A batch already being
// committed finishes; requests still queued get ErrClosed. Close is
// idempotent, and every method called afterwards returns ErrClosed.
func (j *Journal) Close() error {
	j.closeOnce.Do(func() {
		close(j.quit)
		<-j.done
		j.mu.Lock()
		defer j.mu.Unlock()
		j.closed = true
		if err := j.db.Close(); err != nil {
			j.closeErr = fmt.Errorf("journal: close %s: %w", j.path, err)
		}
	})
	return j.closeErr
}

// view runs fn in a read transaction unless the journal is closed.
func (j *Journal) view(fn func(*bolt.Tx) error) error {
	j.mu.RLock()
	defer j.mu.RUnlock()
	if j.closed {
		return ErrClosed
	}
	return j.db.View(fn)
}

// submit hands r to the committer and waits for its result, honouring ctx
// and Close while waiting. Errors are returned in result.err.
func (j *Journal) submit(ctx context.Context, r *request) result {
	if err := ctx.Err(); err != nil {
		return result{err: err}
	}
	select {
	case <-j.quit:
		return result{err: ErrClosed}
	default:
	}
	r.ctx = ctx
	r.res = make(chan result, 1)
	select {
	case j.reqs <- r:
	case <-j.quit:
		return result{err: ErrClosed}
	case <-ctx.Done():
		return result{err: ctx.Err()}
	}
	select {
	case res := <-r.res:
		return res
	case <-j.done:
		// The committer answers before it exits, so a result sent by it is
		// visible here; if there is none the request was never taken.
		select {
		case res := <-r.res:
			return res
		default:
			return result{err: ErrClosed}
		}
	case <-ctx.Done():
		select {
		case res := <-r.res:
			return res
		default:
			return result{err: ctx.Err()}
		}
	}
}

// run is the committer: the only goroutine that writes. It takes one
// request, drains whatever else is already queued (without waiting), and
// commits them all in one transaction.
func (j *Journal) run() {
	defer close(j.done)
	tick := time.NewTicker(pruneInterval)
	defer tick.Stop()
	batch := make([]*request, 0, maxBatch)
	results := make([]result, 0, maxBatch)
	for {
		// Prefer shutting down over starting another batch.
		select {
		case <-j.quit:
			j.rejectQueued()
			j.flushLazy()
			return
		default:
		}
		batch = batch[:0]
		select {
		case <-j.quit:
			j.rejectQueued()
			j.flushLazy()
			return
		case r := <-j.reqs:
			batch = append(batch, r)
		case <-tick.C:
			batch = append(batch, &request{kind: opPrune, ctx: context.Background(), res: make(chan result, 1)})
		case <-j.kick:
			// Only lazy marks: give an append a moment to carry them.
			timer := time.NewTimer(markDelay)
			select {
			case r := <-j.reqs:
				batch = append(batch, r)
			case <-timer.C:
			case <-j.quit:
			}
			timer.Stop()
		}
	drain:
		for len(batch) < maxBatch {
			select {
			case r := <-j.reqs:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		batch = j.takeLazy(batch)
		results = j.commit(batch, results[:0])
		for i, r := range batch {
			if r.kind == opPrune && results[i].err == nil && results[i].removed > 0 {
				j.log.Debug("journal: forgot expired event ids", "count", results[i].removed, "more", results[i].more)
			}
			if r.res == nil { // a lazy mark: nobody waits for it
				if results[i].err != nil {
					j.log.Warn("journal: a done mark was not recorded; the event is replayed after a restart", "seq", r.seq, "err", results[i].err)
				}
			} else {
				r.res <- results[i]
			}
			batch[i] = nil
		}
	}
}

// rejectQueued answers every request still in the queue with ErrClosed.
// flushLazy commits the lazy marks still waiting, at shutdown.
func (j *Journal) flushLazy() {
	if batch := j.takeLazy(nil); len(batch) > 0 {
		for i, res := range j.commit(batch, nil) {
			if res.err != nil {
				j.log.Warn("journal: a done mark was not recorded; the event is replayed after a restart", "seq", batch[i].seq, "err", res.err)
			}
		}
	}
}

func (j *Journal) rejectQueued() {
	for {
		select {
		case r := <-j.reqs:
			r.res <- result{err: ErrClosed}
		default:
			return
		}
	}
}

// txState is what a batch's requests share inside one write transaction.
type txState struct {
	pending, failed, seen, byTime *bolt.Bucket
	nowMs                         int64
}

func newTxState(tx *bolt.Tx, now time.Time) *txState {
	return &txState{
		pending: tx.Bucket(bucketPending),
		failed:  tx.Bucket(bucketFailed),
		seen:    tx.Bucket(bucketSeen),
		byTime:  tx.Bucket(bucketSeenByTime),
		nowMs:   now.UnixMilli(),
	}
}

// commit applies batch in one write transaction and returns one result per
// request (appended to results). Per-request outcomes such as "duplicate" or
// "not pending" do not affect the others; a storage error aborts the whole
// transaction and every applied request gets that error.
func (j *Journal) commit(batch []*request, results []result) []result {
	live := 0
	for _, r := range batch {
		var res result
		r.skipped = false
		if err := r.ctx.Err(); err != nil {
			res.err = err // the caller has gone; don't write on its behalf
			r.skipped = true
		} else {
			live++
		}
		results = append(results, res)
	}
	if live == 0 {
		return results
	}
	err := j.db.Update(func(tx *bolt.Tx) error {
		s := newTxState(tx, j.now())
		if s.pending == nil || s.failed == nil || s.seen == nil || s.byTime == nil {
			return errors.New("journal buckets missing")
		}
		for i, r := range batch {
			if r.skipped {
				continue
			}
			var (
				res result
				err error
			)
			switch r.kind {
			case opAppend:
				res, err = j.applyAppend(s, r)
			case opDone:
				res, err = applyDone(s, r)
			case opFail:
				res, err = applyFail(s, r)
			case opPrune:
				res, err = j.pruneTx(s)
			default:
				res.err = fmt.Errorf("unknown request kind %v", r.kind)
			}
			if err != nil {
				return fmt.Errorf("%v: %w", r.kind, err)
			}
			results[i] = res
		}
		return nil
	})
	if err != nil {
		err = fmt.Errorf("commit batch of %d requests: %w", live, err)
		j.log.Error("journal: commit failed", "requests", live, "err", err)
		for i, r := range batch {
			if !r.skipped {
				results[i] = result{err: err}
			}
		}
		return results
	}
	j.txs.Add(1)
	return results
}

// applyAppend records r unless its id is a duplicate. The returned error is
// a storage error that must abort the transaction.
func (j *Journal) applyAppend(s *txState, r *request) (result, error) {
	id := []byte(r.id)
	if sv := s.seen.Get(id); sv != nil {
		if seenMs, oldSeq, ok := decodeSeen(sv); ok {
			if s.nowMs-seenMs < j.windowMs || has(s.pending, seqKey(oldSeq)) {
				return result{dup: true}, nil
			}
			// Expired but not yet pruned: drop its index entry, re-accept.
			if err := s.byTime.Delete(timeKey(seenMs, r.id)); err != nil {
				return result{}, fmt.Errorf("forget expired id: %w", err)
			}
		} else {
			j.log.Warn("journal: replacing corrupt seen entry", "id", r.id, "bytes", len(sv))
		}
	}
	seq, err := s.pending.NextSequence()
	if err != nil {
		return result{}, fmt.Errorf("next seq: %w", err)
	}
	if err := s.pending.Put(seqKey(seq), r.value); err != nil {
		return result{}, fmt.Errorf("put record seq %d: %w", seq, err)
	}
	if err := s.seen.Put(id, encodeSeen(s.nowMs, seq)); err != nil {
		return result{}, fmt.Errorf("put seen id: %w", err)
	}
	if err := s.byTime.Put(timeKey(s.nowMs, r.id), []byte{}); err != nil {
		return result{}, fmt.Errorf("put seen-by-time index: %w", err)
	}
	return result{seq: seq}, nil
}

func applyDone(s *txState, r *request) (result, error) {
	k := seqKey(r.seq)
	if _, ok := get(s.pending, k); !ok {
		return result{err: errNotPending}, nil
	}
	if err := s.pending.Delete(k); err != nil {
		return result{}, fmt.Errorf("delete pending seq %d: %w", r.seq, err)
	}
	return result{}, nil
}

// applyFail moves the raw pending value, without decoding it, so that even a
// corrupt record can be moved out of the replay set.
func applyFail(s *txState, r *request) (result, error) {
	k := seqKey(r.seq)
	v, ok := get(s.pending, k)
	if !ok {
		return result{err: errNotPending}, nil
	}
	// encodeFailed copies v, which points into the mmap and is about to be
	// deleted.
	if err := s.failed.Put(k, encodeFailed(s.nowMs, r.reason, v)); err != nil {
		return result{}, fmt.Errorf("put failed seq %d: %w", r.seq, err)
	}
	if err := s.pending.Delete(k); err != nil {
		return result{}, fmt.Errorf("delete pending seq %d: %w", r.seq, err)
	}
	return result{}, nil
}

// pruneTx forgets seen ids older than the dedup window whose record is no
// longer pending. It range-scans the time index from the oldest entry and
// stops at the cutoff, so its cost is proportional to what expired, not to
// the number of remembered ids. At most maxPrunePerTx entries are removed;
// result.more reports that more remain.
func (j *Journal) pruneTx(s *txState) (result, error) {
	cutoff := s.nowMs - j.windowMs
	var idxDel, seenDel [][]byte
	var res result
	c := s.byTime.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if len(idxDel) >= maxPrunePerTx {
			res.more = true
			break
		}
		if len(k) <= 8 {
			idxDel = append(idxDel, clone(k)) // malformed index key
			continue
		}
		ms := int64(be.Uint64(k[:8]))
		if ms > cutoff {
			break
		}
		id := k[8:]
		sv := s.seen.Get(id)
		if sv == nil {
			idxDel = append(idxDel, clone(k)) // orphaned index entry
			continue
		}
		seenMs, seq, ok := decodeSeen(sv)
		switch {
		case !ok:
			idxDel = append(idxDel, clone(k))
			seenDel = append(seenDel, clone(id))
		case seenMs != ms:
			idxDel = append(idxDel, clone(k)) // stale: id was re-seen later
		case has(s.pending, seqKey(seq)):
			// Still pending: keep the id so a retry cannot record it twice.
		default:
			idxDel = append(idxDel, clone(k))
			seenDel = append(seenDel, clone(id))
		}
	}
	for _, k := range idxDel {
		if err := s.byTime.Delete(k); err != nil {
			return result{}, fmt.Errorf("delete seen-by-time entry: %w", err)
		}
	}
	for _, id := range seenDel {
		if err := s.seen.Delete(id); err != nil {
			return result{}, fmt.Errorf("delete seen id: %w", err)
		}
	}
	res.removed = len(seenDel)
	return res, nil
}

// get returns k's value and whether k exists; unlike Bucket.Get it tells
// an empty value apart from a missing key.
func get(b *bolt.Bucket, k []byte) ([]byte, bool) {
	gk, v := b.Cursor().Seek(k)
	return v, gk != nil && bytes.Equal(gk, k)
}

func has(b *bolt.Bucket, k []byte) bool {
	_, ok := get(b, k)
	return ok
}

// txCount reports how many write transactions the committer has committed;
// used by tests and the benchmark to measure events per fsync.
func (j *Journal) txCount() uint64 { return j.txs.Load() }

// prune asks the committer to forget expired ids now (tests use it instead
// of waiting for the ticker). It reports how many ids were forgotten.
func (j *Journal) prune(ctx context.Context) (int, error) {
	res := j.submit(ctx, &request{kind: opPrune})
	if res.err != nil {
		return 0, fmt.Errorf("journal: prune: %w", res.err)
	}
	return res.removed, nil
}
