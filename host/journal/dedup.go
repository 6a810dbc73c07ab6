package journal

// This file is the de-duplication index: event ids seen within the
// window, forgotten once they leave it and their record is finished.

import "slices"

// seenEntry is one id in the order it was seen, for pruning by age.
type seenEntry struct {
	ms   int64
	hash uint64
	seq  uint64
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
