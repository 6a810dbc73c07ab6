package journal

// This file is the committer: the one goroutine that turns waiting appends
// and marks into one write and one fdatasync per batch (group commit).

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"path/filepath"
	"time"
)

// opKind is what a request asks of the committer.
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

// markDelay is how long a MarkDone waits for an append to share its commit
// before it is committed on its own.
const markDelay = 5 * time.Millisecond

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
