package journal

// This file rebuilds the journal's state from its files at Open: the
// segments, a torn tail cut off, and the failed records.

import (
	"errors"
	"fmt"
	"hash/maphash"
	"os"
	"path/filepath"
)

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
