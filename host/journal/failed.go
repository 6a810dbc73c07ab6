package journal

import (
	"cmp"
	"fmt"
	"path/filepath"
	"slices"
)

// retainFailed drops the failed records past the retention bounds (older
// than failedAgeMs, or beyond the newest failedMax) and the space of
// retried ones, by writing the records kept to a new file that replaces
// failed.wal. It runs under mu (or in Open) and reports how many records
// it dropped. A failure leaves the old file in place.
func (j *Journal) retainFailed(nowMs int64) (int, error) {
	type kept struct {
		seq uint64
		failedEntry
	}
	all := make([]kept, 0, len(j.failedIdx))
	var live int64
	for seq, e := range j.failedIdx {
		all = append(all, kept{seq, e})
		live += frameHdrLen + int64(e.n)
	}
	// By failure time, then seq: the order the file has them in.
	slices.SortFunc(all, func(a, b kept) int { return cmp.Or(cmp.Compare(a.ms, b.ms), cmp.Compare(a.seq, b.seq)) })
	cutoff := nowMs - j.failedAgeMs
	keep := slices.DeleteFunc(slices.Clone(all), func(k kept) bool { return k.ms <= cutoff })
	if len(keep) > j.failedMax {
		keep = keep[len(keep)-j.failedMax:]
	}
	dropped := len(all) - len(keep)
	// Retried records leave their frames behind; rewrite once they take
	// as much room as the live ones (and at least a segment's fill).
	garbage := j.failedSize - int64(len(segmentMagic)) - live
	if dropped == 0 && (garbage < zeroChunk || garbage < live) {
		return 0, nil
	}
	path := filepath.Join(j.dir, failedName)
	tmp := path + ".tmp"
	_ = j.fs.Remove(tmp) // left by a crash in the middle of the last rewrite
	f, err := createFile(j.fs, tmp)
	if err != nil {
		return 0, fmt.Errorf("create %s: %w", tmp, err)
	}
	fail := func(err error) (int, error) {
		f.Close()
		_ = j.fs.Remove(tmp)
		return 0, err
	}
	idx := make(map[uint64]failedEntry, len(keep))
	size := int64(len(segmentMagic))
	var buf []byte
	flush := func() error {
		if _, err := f.WriteAt(buf, size); err != nil {
			return fmt.Errorf("write %s: %w", tmp, err)
		}
		size += int64(len(buf))
		buf = buf[:0]
		return nil
	}
	for _, k := range keep {
		v, err := readAt(j.failed, k.off, k.n)
		if err != nil {
			return fail(fmt.Errorf("read failed seq %d: %w", k.seq, err))
		}
		buf = appendFrame(buf, frameFail, k.seq, k.ms, v)
		idx[k.seq] = failedEntry{ms: k.ms, off: size + int64(len(buf)-len(v)), n: k.n}
		if len(buf) >= zeroChunk {
			if err := flush(); err != nil {
				return fail(err)
			}
		}
	}
	if err := flush(); err != nil {
		return fail(err)
	}
	if err := f.Datasync(); err != nil {
		return fail(fmt.Errorf("fdatasync %s: %w", tmp, err))
	}
	if err := j.fs.Rename(tmp, path); err != nil {
		return fail(fmt.Errorf("replace %s: %w", path, err))
	}
	// The open file is failed.wal now; the old one is unlinked.
	j.failed.Close()
	j.failed, j.failedSize, j.failedIdx = f, size, idx
	if err := j.fs.SyncDir(j.dir); err != nil {
		// The rename may not survive a crash; then the old file, with the
		// records this dropped, comes back: nothing is lost.
		return dropped, fmt.Errorf("sync %s after replacing %s: %w", j.dir, failedName, err)
	}
	return dropped, nil
}
