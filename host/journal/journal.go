// Package journal is lkedge's embedded, durable record of accepted LiveKit
// webhooks.
//
// The HTTP ingest answers 200 only after Append has returned, that is after
// the event has been written and fdatasync'd to the journal's log, and then
// processes the event from this record. When processing finishes it calls
// Done or MarkDone (or Fail when it gives up). If the process crashes in
// between, Pending returns the records that still need processing so they can
// be replayed at start-up. Event ids are remembered for a dedup window so
// that LiveKit's retries of an event we already accepted are acknowledged
// without being processed twice.
//
// The journal is a write-ahead log of segment files (segment.go), not a
// B-tree: accepting an event is one frame appended to a file, and all writes
// go through a single committer goroutine that writes every request queued
// at that moment with one write and one fdatasync (group commit). The state
// that answers questions (what is pending, which ids were seen) lives in
// memory and is rebuilt from the log at Open; record bodies stay on disk.
// A bbolt journal cost two fsyncs and a page rewrite per commit, about half
// of lkedge's CPU per event under load.
package journal

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const (
	defaultDedupWindow = 10 * time.Minute
	// openTimeout bounds the wait for the directory's lock so that a second
	// process fails fast with a clear error instead of hanging.
	openTimeout   = time.Second
	pruneInterval = time.Minute
	// maxBatch caps how many requests share one write, bounding both the
	// write's size and the latency added to the first request.
	maxBatch  = 512
	queueSize = 2 * maxBatch
	// maxIDLen keeps ids short enough to index cheaply.
	maxIDLen = 1024
	// maxReasonLen bounds the failure reason stored with a failed record.
	maxReasonLen = 8 << 10
	// maxBodyLen bounds one record, far above any webhook ingest accepts.
	maxBodyLen = 16 << 20
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
// fields exist mainly so tests can inject a clock, a logger and small
// segments.
type Options struct {
	DedupWindow time.Duration    // how long a seen event id is remembered; default 10 min
	Now         func() time.Time // default time.Now
	Logger      *slog.Logger     // default slog.Default()
	SegmentSize int64            // bytes after which a new segment starts; default 64 MiB
	FS          FS               // the file system under the journal; default OSFS

	// FailedMaxAge and FailedMaxCount bound failed.wal: a failed record
	// older than FailedMaxAge, or beyond the newest FailedMaxCount, is
	// dropped at Open and at the minute's prune. Defaults 30 days and
	// 10 000 records.
	FailedMaxAge   time.Duration
	FailedMaxCount int
}

const (
	defaultFailedMaxAge   = 30 * 24 * time.Hour
	defaultFailedMaxCount = 10000
)

// Journal is the durable webhook record. It is safe for concurrent use; all
// writes are serialised through one committer goroutine that groups them
// into shared writes.
type Journal struct {
	dir         string
	windowMs    int64
	segmentSize int64
	now         func() time.Time
	log         *slog.Logger
	failedAgeMs int64
	failedMax   int
	lock        *os.File
	fs          FS

	reqs chan *request
	quit chan struct{} // closed by Close: stop accepting requests
	done chan struct{} // closed by the committer when it has exited

	closeOnce sync.Once
	closeErr  error

	// mu guards everything below against the readers (Pending, Failed) and
	// Close; only the committer writes.
	mu         sync.Mutex
	closed     bool
	segs       []*segment // by first seq; the last one is written to
	pending    map[uint64]location
	nextSeq    uint64
	failed     File
	failedSize int64
	loadErr    error // frames Open could not read in a segment other than the last
	// failedIdx locates the live failed records in failed: seq → frame.
	failedIdx map[uint64]failedEntry
	// broken is set when an fdatasync failed: what reached the disk is then
	// unknown, so the journal refuses writes until it is reopened.
	// brokenCh is closed at the same moment, for whoever must react.
	broken   error
	brokenCh chan struct{}

	// The dedup index: id hash → seq of the id's record, and the order in
	// which ids leave the window. A 64-bit keyed hash keeps an id in a few
	// dozen bytes; with a random key per Open, two ids sharing a hash
	// within one window is about as likely as a disk flipping a bit the
	// checksum misses.
	seed  maphash.Seed
	seen  map[uint64]uint64
	fifo  []seenEntry
	head  int
	stuck []seenEntry // out of the window but still pending

	txs atomic.Uint64 // committed writes (test/benchmark hook)

	lazyMu sync.Mutex
	lazy   []uint64      // MarkDone seqs not yet committed
	kick   chan struct{} // wakes the committer for lazy marks

	// Scratch space of the committer, kept between commits.
	buf, failBuf []byte
	batchSeen    map[uint64]struct{}
	resolved     map[uint64]struct{}
}

// failedEntry is where a failed record's payload lies in failed.wal, and
// when it failed.
type failedEntry struct {
	ms  int64
	off int64
	n   uint32
}

// location is where a pending record's payload lies.
type location struct {
	seg *segment
	off int64
	n   uint32
}

// Open opens (creating if needed) the journal in directory dir. It takes an
// exclusive lock on the directory with a short timeout, so a second process
// using it gets an "in use" error instead of corrupting it. A write torn by
// a crash at the end of the log is cut off; seen ids older than the dedup
// window are forgotten before Open returns.
func Open(dir string, opts Options) (*Journal, error) {
	if dir == "" {
		return nil, errors.New("journal: open: empty path")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("journal: create directory %s: %w", dir, err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	window := opts.DedupWindow
	if window <= 0 {
		window = defaultDedupWindow
	}
	j := &Journal{
		dir:         dir,
		windowMs:    window.Milliseconds(),
		segmentSize: opts.SegmentSize,
		now:         opts.Now,
		log:         opts.Logger,
		lock:        lock,
		reqs:        make(chan *request, queueSize),
		quit:        make(chan struct{}),
		kick:        make(chan struct{}, 1),
		done:        make(chan struct{}),
		pending:     make(map[uint64]location),
		seed:        maphash.MakeSeed(),
		seen:        make(map[uint64]uint64),
		failedIdx:   make(map[uint64]failedEntry),
		brokenCh:    make(chan struct{}),
		fs:          opts.FS,
		failedAgeMs: opts.FailedMaxAge.Milliseconds(),
		failedMax:   opts.FailedMaxCount,
		batchSeen:   make(map[uint64]struct{}),
		resolved:    make(map[uint64]struct{}),
	}
	if j.segmentSize <= 0 {
		j.segmentSize = defaultSegmentSize
	}
	if j.now == nil {
		j.now = time.Now
	}
	if j.fs == nil {
		j.fs = OSFS{}
	}
	if j.failedAgeMs <= 0 {
		j.failedAgeMs = defaultFailedMaxAge.Milliseconds()
	}
	if j.failedMax <= 0 {
		j.failedMax = defaultFailedMaxCount
	}
	if j.log == nil {
		j.log = slog.Default()
	}
	j.log = j.log.With("component", "journal", "path", dir)
	if err := j.load(); err != nil {
		j.closeFiles()
		return nil, fmt.Errorf("journal: open %s: %w", dir, err)
	}
	go j.run()
	return j, nil
}

// lockDir takes the directory's lock, retrying until openTimeout.
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("journal: open lock %s: %w", path, err)
	}
	deadline := time.Now().Add(openTimeout)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, fmt.Errorf("journal %s is in use by another process: %w", dir, ErrInUse)
			}
			return nil, fmt.Errorf("journal: lock %s: %w", path, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ErrInUse is returned (wrapped) by Open when another process holds the
// journal.
var ErrInUse = errors.New("journal locked by another process")

// Append durably records one accepted webhook and returns only after the
// write holding it has been fdatasync'd, so the caller may acknowledge the
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
	case len(body) > maxBodyLen:
		return Record{}, false, fmt.Errorf("journal: append event %q: body of %d bytes is too large", id, len(body))
	}
	ms := receivedAt.UnixMilli()
	// Encode here, in the caller's goroutine: it spreads the copying across
	// callers and means the committer never touches the caller's body slice.
	value, bodyOff := encodeRecord(ms, id, body)
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

// Fail records that processing gave up on the record: it moves from the
// pending set to the failed records together with reason and the current
// time, so it is no longer replayed but is kept for inspection.
func (j *Journal) Fail(ctx context.Context, seq uint64, reason string) error {
	if res := j.submit(ctx, &request{kind: opFail, seq: seq, reason: truncate(reason, maxReasonLen)}); res.err != nil {
		return fmt.Errorf("journal: fail seq %d: %w", seq, res.err)
	}
	return nil
}

// Pending returns the records that were appended but neither Done nor
// Failed, in Seq order: the records to replay at start-up.
//
// A record that cannot be decoded does not hide the others: Pending returns
// every decodable record together with an error naming each bad seq (and
// any segment Open could not read to its end), so the caller can replay
// the rest and Fail the bad ones.
func (j *Journal) Pending() ([]Record, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return nil, fmt.Errorf("journal: read pending records: %w", ErrClosed)
	}
	seqs := make([]uint64, 0, len(j.pending))
	for seq := range j.pending {
		seqs = append(seqs, seq)
	}
	slices.Sort(seqs)
	var (
		recs []Record
		errs = []error{j.loadErr}
	)
	for _, seq := range seqs {
		loc := j.pending[seq]
		v, err := readAt(loc.seg.f, loc.off, loc.n)
		if err != nil {
			return nil, fmt.Errorf("journal: read pending seq %d: %w", seq, err)
		}
		rec, err := decodeRecord(seq, v)
		if err != nil {
			errs = append(errs, fmt.Errorf("journal: pending seq %d: %w", seq, err))
			continue
		}
		recs = append(recs, rec)
	}
	return recs, errors.Join(errs...)
}

// Read returns the pending record seq, read back from the log: a caller
// holding many accepted events may keep only their seqs, and read each
// when it is processed.
//
// It reads outside the journal's lock, which a commit holds through its
// fdatasync: the record's segment stays open while the record is pending,
// and a Close meanwhile makes the read fail.
func (j *Journal) Read(seq uint64) (Record, error) {
	j.mu.Lock()
	closed := j.closed
	loc, ok := j.pending[seq]
	j.mu.Unlock()
	if closed {
		return Record{}, fmt.Errorf("journal: read seq %d: %w", seq, ErrClosed)
	}
	if !ok {
		return Record{}, fmt.Errorf("journal: read seq %d: %w", seq, errNotPending)
	}
	v, err := readAt(loc.seg.f, loc.off, loc.n)
	if err != nil {
		return Record{}, fmt.Errorf("journal: read seq %d: %w", seq, err)
	}
	rec, err := decodeRecord(seq, v)
	if err != nil {
		return Record{}, fmt.Errorf("journal: read seq %d: %w", seq, err)
	}
	return rec, nil
}

// Failed returns the records whose processing was given up (and not
// retried since), in Seq order. Like Pending, it returns the decodable
// records along with an error naming each seq whose record is corrupt.
func (j *Journal) Failed() ([]FailedRecord, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return nil, fmt.Errorf("journal: read failed records: %w", ErrClosed)
	}
	seqs := make([]uint64, 0, len(j.failedIdx))
	for seq := range j.failedIdx {
		seqs = append(seqs, seq)
	}
	slices.Sort(seqs)
	recs := make([]FailedRecord, 0, len(seqs))
	var errs []error
	for _, seq := range seqs {
		e := j.failedIdx[seq]
		v, err := readAt(j.failed, e.off, e.n)
		if err != nil {
			return nil, fmt.Errorf("journal: read failed seq %d: %w", seq, err)
		}
		rec, err := decodeFailed(seq, v)
		if err != nil {
			errs = append(errs, fmt.Errorf("journal: failed seq %d: %w", seq, err))
			continue
		}
		recs = append(recs, rec)
	}
	return recs, errors.Join(errs...)
}

// ErrNotFailed is returned (wrapped) by Retry for a seq that has no failed
// record.
var ErrNotFailed = errors.New("no failed record with this seq")

// Retry puts a failed record back among the pending ones, under its own
// seq (so a claim this replica made for it still matches), and returns it
// for the caller to process again. The record leaves the failed ones in
// the same commit.
func (j *Journal) Retry(ctx context.Context, seq uint64) (Record, error) {
	res := j.submit(ctx, &request{kind: opRetry, seq: seq})
	if res.err != nil {
		return Record{}, fmt.Errorf("journal: retry seq %d: %w", seq, res.err)
	}
	return res.rec, nil
}

// Broken returns a channel that is closed when the journal stops writing
// because an fdatasync (or cutting off a failed write) failed: what is on
// the disk is then unknown, and only reading it again (a restart) makes the
// journal usable. BrokenErr says why.
func (j *Journal) Broken() <-chan struct{} { return j.brokenCh }

// BrokenErr is the reason the journal stopped writing, nil while it works.
func (j *Journal) BrokenErr() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.broken
}

// setBroken records the first storage failure that leaves the disk in an
// unknown state; the caller holds mu.
func (j *Journal) setBroken(err error) error {
	if j.broken == nil {
		j.broken = err
		close(j.brokenCh)
		j.log.Error("journal: broken; it accepts no more writes until lkedge restarts", "err", err)
	}
	return j.broken
}

// Close stops the committer and closes the files. A batch already being
// committed finishes; requests still queued get ErrClosed. Close is
// idempotent, and every method called afterwards returns ErrClosed.
func (j *Journal) Close() error {
	j.closeOnce.Do(func() {
		close(j.quit)
		<-j.done
		j.mu.Lock()
		defer j.mu.Unlock()
		j.closed = true
		j.closeErr = j.closeFiles()
	})
	return j.closeErr
}

// closeFiles closes every file and releases the lock.
func (j *Journal) closeFiles() error {
	var errs []error
	for _, s := range j.segs {
		if s.f != nil {
			errs = append(errs, s.f.Close())
		}
	}
	if j.failed != nil {
		errs = append(errs, j.failed.Close())
	}
	errs = append(errs, j.lock.Close()) // closing releases the flock
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("journal: close %s: %w", j.dir, err)
	}
	return nil
}

func failAll(batch []*request, results []result, err error) []result {
	for i, r := range batch {
		if !r.skipped {
			results[i] = result{err: err}
		}
	}
	return results
}

// txCount reports how many writes the committer has committed; used by
// tests and the benchmark to measure events per fsync.
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
