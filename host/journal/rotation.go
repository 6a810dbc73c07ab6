package journal

// This file is the segments' life: the active segment, rolling to a new
// one, and deleting those whose events are all finished.

import (
	"fmt"
	"path/filepath"
)

// active is the segment appends go to.
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
