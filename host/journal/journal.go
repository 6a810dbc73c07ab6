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

type seenEntry struct {
	ms   int64
	hash uint64
	seq  uint64
}

type opKind uint8

const (
	opAppend opKind = iota + 1
	opDone
	opFail
	opPrune
	opRetry
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
	case opRetry:
		return "retry"
	}
	return fmt.Sprintf("op(%d)", uint8(k))
}

// request is one write waiting for the committer.
type request struct {
	kind   opKind
	ctx    context.Context
	id     string // append
	value  []byte // append: encoded record
	seq    uint64 // done, fail, retry
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
	rec     Record // retry: the record, pending again
	err     error
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

// load rebuilds the in-memory state from the files, cuts a torn tail off
// the last segment and the failed file, and prepares the active segment.
func (j *Journal) load() error {
	segs, err := listSegments(j.fs, j.dir)
	if err != nil {
		return err
	}
	j.nextSeq = 1
	for i, s := range segs {
		last := i == len(segs)-1
		f, err := j.fs.OpenFile(s.path, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		s.f = f
		j.segs = append(j.segs, s)
		good, err := scanFrames(f, func(fr frame) error { j.replayFrame(s, fr); return nil })
		switch {
		case err == nil:
		case errors.Is(err, errTorn) && last:
			// The zero-filled tail goes as well: a commit torn by the
			// crash may have left bytes of its frames in it, which later
			// frames written over the zeros could leave looking whole.
			if !errors.Is(err, errZeroTail) {
				j.log.Warn("journal: cutting off a write torn by a crash", "segment", filepath.Base(s.path), "offset", good, "err", err)
			}
			if err := f.Truncate(good); err != nil {
				return fmt.Errorf("truncate torn segment %s: %w", s.path, err)
			}
		case errors.Is(err, errTorn):
			j.loadErr = errors.Join(j.loadErr, fmt.Errorf("segment %s: %w; the frames after it are unreadable", filepath.Base(s.path), err))
			j.log.Error("journal: corrupt segment; records after the damage cannot be replayed", "segment", filepath.Base(s.path), "err", err)
		default:
			return fmt.Errorf("read segment %s: %w", s.path, err)
		}
		if good < int64(len(segmentMagic)) && last {
			// Created but never initialised: write its magic again.
			if err := f.Truncate(0); err != nil {
				return err
			}
			if _, err := f.WriteAt([]byte(segmentMagic), 0); err != nil {
				return err
			}
			good = int64(len(segmentMagic))
		}
		s.size = good
		j.nextSeq = max(j.nextSeq, s.first)
	}
	if len(j.segs) == 0 {
		if err := j.roll(); err != nil {
			return err
		}
	}
	if err := j.openFailed(); err != nil {
		return err
	}
	nowMs := j.now().UnixMilli()
	if n := j.pruneSeen(nowMs) + j.pruneStuck(); n > 0 {
		j.log.Info("journal: forgot expired event ids at open", "count", n)
	}
	j.dropSegments(nowMs)
	if n, err := j.retainFailed(nowMs); err != nil {
		j.log.Warn("journal: dropping old failed records failed", "err", err)
	} else if n > 0 {
		j.log.Info("journal: dropped failed records past retention", "count", n)
	}
	return nil
}

// replayFrame applies one frame read at Open to the in-memory state.
func (j *Journal) replayFrame(s *segment, fr frame) {
	switch fr.kind {
	case frameAppend:
		j.pending[fr.seq] = location{seg: s, off: fr.off, n: uint32(len(fr.payload))}
		s.unresolved++
		s.maxMs = max(s.maxMs, fr.ms)
		if id, ok := recordID(fr.payload); ok {
			h := maphash.String(j.seed, id)
			j.seen[h] = fr.seq
			j.fifo = append(j.fifo, seenEntry{ms: fr.ms, hash: h, seq: fr.seq})
		}
		j.nextSeq = max(j.nextSeq, fr.seq+1)
	case frameDone, frameFail:
		if loc, ok := j.pending[fr.seq]; ok {
			delete(j.pending, fr.seq)
			loc.seg.unresolved--
		}
	}
}

// openFailed opens (or creates) the failed-records file, cutting off a torn
// tail.
func (j *Journal) openFailed() error {
	path := filepath.Join(j.dir, failedName)
	f, err := j.fs.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		if f, err = createFile(j.fs, path); err != nil {
			return fmt.Errorf("create %s: %w", path, err)
		}
		j.failed, j.failedSize = f, int64(len(segmentMagic))
		return nil
	}
	if err != nil {
		return err
	}
	j.failed = f
	good, err := scanFrames(f, func(fr frame) error {
		switch fr.kind {
		case frameFail:
			j.failedIdx[fr.seq] = failedEntry{ms: fr.ms, off: fr.off, n: uint32(len(fr.payload))}
		case frameDone: // retried: back among the pending records
			delete(j.failedIdx, fr.seq)
		}
		return nil
	})
	if err != nil && !errors.Is(err, errTorn) {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if err != nil || good < int64(len(segmentMagic)) {
		if good < int64(len(segmentMagic)) {
			good = 0
		}
		if err := f.Truncate(good); err != nil {
			return fmt.Errorf("truncate torn %s: %w", path, err)
		}
		if good == 0 {
			if _, err := f.WriteAt([]byte(segmentMagic), 0); err != nil {
				return err
			}
			good = int64(len(segmentMagic))
		}
	}
	j.failedSize = good
	return nil
}

func (j *Journal) active() *segment { return j.segs[len(j.segs)-1] }

// roll starts a new active segment at the next seq.
func (j *Journal) roll() error {
	s := &segment{first: j.nextSeq, path: filepath.Join(j.dir, segmentName(j.nextSeq))}
	f, err := createFile(j.fs, s.path)
	if err != nil {
		return fmt.Errorf("start segment %s: %w", s.path, err)
	}
	s.f, s.size = f, int64(len(segmentMagic))
	j.segs = append(j.segs, s)
	return nil
}

// dropSegments deletes segments from the oldest on while everything in
// them is resolved and out of the dedup window. Deleting in order keeps the
// rest replayable: a done frame never refers to a record in a later
// segment.
func (j *Journal) dropSegments(nowMs int64) {
	cutoff := nowMs - j.windowMs
	dropped := false
	for len(j.segs) > 1 {
		s := j.segs[0]
		if s.unresolved > 0 || s.maxMs > cutoff {
			break
		}
		s.f.Close()
		if err := j.fs.Remove(s.path); err != nil {
			j.log.Warn("journal: removing an old segment failed", "segment", filepath.Base(s.path), "err", err)
			break
		}
		j.segs = j.segs[1:]
		dropped = true
	}
	if dropped {
		if err := j.fs.SyncDir(j.dir); err != nil {
			j.log.Warn("journal: syncing the directory after removing segments failed", "err", err)
		}
	}
}

// pruneSeen forgets the ids that left the window, unless their record is
// still pending; those wait in stuck. It returns how many it forgot.
func (j *Journal) pruneSeen(nowMs int64) int {
	cutoff := nowMs - j.windowMs
	removed := 0
	for j.head < len(j.fifo) && j.fifo[j.head].ms <= cutoff {
		e := j.fifo[j.head]
		j.head++
		if j.seen[e.hash] != e.seq {
			continue // re-seen later under a newer entry
		}
		if _, ok := j.pending[e.seq]; ok {
			j.stuck = append(j.stuck, e)
			continue
		}
		delete(j.seen, e.hash)
		removed++
	}
	if j.head > 1024 && j.head > len(j.fifo)/2 {
		j.fifo = append(j.fifo[:0], j.fifo[j.head:]...)
		j.head = 0
	}
	return removed
}

// pruneStuck forgets the stuck ids whose record is no longer pending.
func (j *Journal) pruneStuck() int {
	removed := 0
	j.stuck = slices.DeleteFunc(j.stuck, func(e seenEntry) bool {
		if j.seen[e.hash] != e.seq {
			return true
		}
		if _, ok := j.pending[e.seq]; ok {
			return false
		}
		delete(j.seen, e.hash)
		removed++
		return true
	})
	return removed
}

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
// commits them all in one write.
func (j *Journal) run() {
	defer close(j.done)
	tick := time.NewTicker(pruneInterval)
	defer tick.Stop()
	var lastCommit time.Time
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
		j.linger(batch, lastCommit)
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
		lastCommit = time.Now()
		for i, r := range batch {
			if r.kind == opPrune && results[i].err == nil && results[i].removed > 0 {
				j.log.Debug("journal: forgot expired event ids", "count", results[i].removed)
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

// commitGap is the least time from the end of one commit to the start of
// the next. At a few thousand events per second appends arrive one at a
// time, so without it each would pay a whole fdatasync and the CPU per
// event would be highest exactly at moderate load. Waiting for the gap
// lets the appends of that moment share one; it adds at most the gap to an
// append's latency, and nothing once a full batch is queued. The gap is
// counted from a commit's end, not its start: from the start, fewer
// appends share each fdatasync and the CPU goes to fsyncs
// (BenchmarkAppendRate; figures in docs/benchmarks.md).
const commitGap = time.Millisecond

// linger holds a batch that is not full until commitGap has passed since
// the last commit, so that the appends arriving meanwhile share its
// fdatasync.
func (j *Journal) linger(batch []*request, lastCommit time.Time) {
	wait := time.Until(lastCommit.Add(commitGap))
	if wait <= 0 || len(batch) == 0 || len(j.reqs) >= maxBatch {
		return
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-j.quit:
	}
}

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

// rejectQueued answers every request still in the queue with ErrClosed.
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

// planned is what a request will change in memory once its frame is on
// disk.
type planned struct {
	hash    uint64   // append, retry
	loc     location // append, retry: off is relative to the batch's buffer
	failOff int64    // fail: payload offset relative to the failed buffer
	failLen uint32
}

// commit writes batch with one write and one fdatasync (two when it fails
// records: the failed file first) and returns one result per request
// (appended to results). Per-request outcomes such as "duplicate" or "not
// pending" do not affect the others; a storage error fails every request
// that would have written.
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
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.broken != nil {
		return failAll(batch, results, j.broken)
	}
	nowMs := j.now().UnixMilli()
	removed := j.pruneSeen(nowMs)
	seg := j.active()
	firstSeq := j.nextSeq
	buf, failBuf := j.buf[:0], j.failBuf[:0]
	var retryBuf []byte
	clear(j.batchSeen)
	clear(j.resolved)
	plans := make([]planned, len(batch))
	writes := false
	for i, r := range batch {
		if r.skipped {
			continue
		}
		switch r.kind {
		case opAppend:
			h := maphash.String(j.seed, r.id)
			_, seen := j.seen[h]
			_, inBatch := j.batchSeen[h]
			if seen || inBatch {
				results[i].dup = true
				r.skipped = true // nothing to apply
				continue
			}
			j.batchSeen[h] = struct{}{}
			seq := j.nextSeq
			j.nextSeq++
			buf = appendFrame(buf, frameAppend, seq, nowMs, r.value)
			plans[i] = planned{hash: h, loc: location{seg: seg, off: int64(len(buf) - len(r.value)), n: uint32(len(r.value))}}
			results[i].seq = seq
		case opDone, opFail:
			loc, ok := j.pending[r.seq]
			if _, again := j.resolved[r.seq]; !ok || again {
				results[i].err = errNotPending
				r.skipped = true
				continue
			}
			j.resolved[r.seq] = struct{}{}
			kind := frameDone
			if r.kind == opFail {
				kind = frameFail
				// The raw record is copied without decoding it, so even a
				// corrupt one can be moved out of the replay set.
				raw, err := readAt(loc.seg.f, loc.off, loc.n)
				if err != nil {
					results[i].err = fmt.Errorf("read record: %w", err)
					r.skipped = true
					delete(j.resolved, r.seq)
					continue
				}
				payload := encodeFailed(nowMs, r.reason, raw)
				failBuf = appendFrame(failBuf, frameFail, r.seq, nowMs, payload)
				plans[i].failOff, plans[i].failLen = int64(len(failBuf)-len(payload)), uint32(len(payload))
			}
			buf = appendFrame(buf, kind, r.seq, nowMs, nil)
		case opRetry:
			fe, ok := j.failedIdx[r.seq]
			_, pending := j.pending[r.seq]
			if _, again := j.resolved[r.seq]; !ok || pending || again {
				results[i].err = ErrNotFailed
				r.skipped = true
				continue
			}
			v, err := readAt(j.failed, fe.off, fe.n)
			var fr FailedRecord
			if err == nil {
				fr, err = decodeFailed(r.seq, v)
			}
			if err != nil {
				results[i].err = fmt.Errorf("read failed record: %w", err)
				r.skipped = true
				continue
			}
			j.resolved[r.seq] = struct{}{}
			raw := encodedRecord(v)
			// A done frame in the failed file takes the record out of it,
			// written after the record is pending again (write).
			retryBuf = appendFrame(retryBuf, frameDone, r.seq, nowMs, nil)
			buf = appendFrame(buf, frameAppend, r.seq, nowMs, raw)
			plans[i] = planned{hash: maphash.String(j.seed, fr.ID), loc: location{seg: seg, off: int64(len(buf) - len(raw)), n: uint32(len(raw))}}
			results[i].rec = fr.Record
		case opPrune:
			results[i].removed = removed + j.pruneStuck()
			if n, err := j.retainFailed(nowMs); err != nil {
				j.log.Warn("journal: dropping old failed records failed", "err", err)
			} else if n > 0 {
				j.log.Info("journal: dropped failed records past retention", "count", n)
			}
			r.skipped = true
			continue
		default:
			results[i].err = fmt.Errorf("unknown request kind %v", r.kind)
			r.skipped = true
			continue
		}
		writes = true
	}
	j.buf, j.failBuf = buf, failBuf
	if !writes {
		return results
	}
	failBase := j.failedSize
	if err := j.write(seg, buf, failBuf, retryBuf); err != nil {
		j.nextSeq = firstSeq
		err = fmt.Errorf("write batch of %d requests: %w", live, err)
		j.log.Error("journal: commit failed", "requests", live, "err", err)
		for i, r := range batch {
			if !r.skipped {
				results[i] = result{err: err}
			}
		}
		return results
	}
	j.txs.Add(1)
	for i, r := range batch {
		if r.skipped {
			continue
		}
		switch r.kind {
		case opAppend:
			p := plans[i]
			p.loc.off += seg.size
			j.pending[results[i].seq] = p.loc
			seg.unresolved++
			seg.maxMs = max(seg.maxMs, nowMs)
			j.seen[p.hash] = results[i].seq
			j.fifo = append(j.fifo, seenEntry{ms: nowMs, hash: p.hash, seq: results[i].seq})
		case opRetry:
			p := plans[i]
			p.loc.off += seg.size
			j.pending[r.seq] = p.loc
			seg.unresolved++
			seg.maxMs = max(seg.maxMs, nowMs)
			j.seen[p.hash] = r.seq
			j.fifo = append(j.fifo, seenEntry{ms: nowMs, hash: p.hash, seq: r.seq})
			delete(j.failedIdx, r.seq)
		case opDone, opFail:
			loc := j.pending[r.seq]
			delete(j.pending, r.seq)
			loc.seg.unresolved--
			if r.kind == opFail {
				j.failedIdx[r.seq] = failedEntry{ms: nowMs, off: failBase + plans[i].failOff, n: plans[i].failLen}
			}
		}
	}
	seg.size += int64(len(buf))
	if seg.size >= j.segmentSize {
		if err := j.roll(); err != nil {
			// The full segment simply keeps growing; the next commit tries again.
			j.log.Warn("journal: starting a new segment failed", "err", err)
		}
	}
	j.dropSegments(nowMs)
	return results
}

// write puts the failed records and then the batch's frames on disk. A
// failed write is cut off again so the log stays well-formed; a failed
// fdatasync leaves the disk in an unknown state, so the journal stops
// writing (setBroken) until it is opened again, which re-reads what is
// there.
//
// retryBuf, the marks that take retried records out of the failed file, is
// written last: a crash before it leaves a retried record both pending and
// failed, never neither. Once the segment holds the record again, a failure
// to write the marks leaves memory and disk apart, so it breaks the journal
// and the restart reads both back.
func (j *Journal) write(seg *segment, buf, failBuf, retryBuf []byte) error {
	if len(failBuf) > 0 {
		if _, err := j.failed.WriteAt(failBuf, j.failedSize); err != nil {
			return j.undo(j.failed, j.failedSize, fmt.Errorf("write failed records: %w", err))
		}
		if err := j.failed.Datasync(); err != nil {
			return j.setBroken(fmt.Errorf("fdatasync of failed records: %w", err))
		}
		j.failedSize += int64(len(failBuf))
	}
	if _, err := seg.f.WriteAt(buf, seg.size); err != nil {
		seg.zeroed = seg.size
		return j.undo(seg.f, seg.size, fmt.Errorf("write segment: %w", err))
	}
	if end := seg.size + int64(len(buf)); end > seg.zeroed-zeroChunk/2 && end < j.segmentSize {
		// Fill ahead, within the segment, so the next commits overwrite.
		to := min(max(seg.zeroed, end)+zeroChunk, j.segmentSize)
		if err := zeroFill(seg.f, max(seg.zeroed, end), to); err != nil {
			seg.zeroed = seg.size
			return j.undo(seg.f, seg.size, fmt.Errorf("zero-fill segment: %w", err))
		}
		seg.zeroed = to
	}
	if err := seg.f.Datasync(); err != nil {
		return j.setBroken(fmt.Errorf("fdatasync of segment %s: %w", filepath.Base(seg.path), err))
	}
	if len(retryBuf) > 0 {
		if _, err := j.failed.WriteAt(retryBuf, j.failedSize); err != nil {
			return j.setBroken(fmt.Errorf("write the retry marks of failed records: %w", err))
		}
		if err := j.failed.Datasync(); err != nil {
			return j.setBroken(fmt.Errorf("fdatasync of failed records: %w", err))
		}
		j.failedSize += int64(len(retryBuf))
	}
	return nil
}

// undo cuts f back to size after a failed write.
func (j *Journal) undo(f File, size int64, err error) error {
	if terr := f.Truncate(size); terr != nil {
		return j.setBroken(fmt.Errorf("cutting off a failed write: %w", errors.Join(err, terr)))
	}
	return err
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
