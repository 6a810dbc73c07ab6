package journal

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// faultFS is the real file system whose fdatasyncs fail with EIO while
// failSync is set, as a disk that lost a write reports it, and whose writes
// to segments (not failed.wal) fail with ENOSPC while failSegWrite is set.
type faultFS struct {
	OSFS
	failSync     atomic.Bool
	failSegWrite atomic.Bool
}

func (f *faultFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	file, err := f.OSFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return faultFile{file, f, filepath.Base(name) != failedName}, nil
}

type faultFile struct {
	File
	fs      *faultFS
	segment bool
}

func (f faultFile) WriteAt(b []byte, off int64) (int, error) {
	if f.segment && f.fs.failSegWrite.Load() {
		return 0, syscall.ENOSPC
	}
	return f.File.WriteAt(b, off)
}

func (f faultFile) Datasync() error {
	if f.fs.failSync.Load() {
		return syscall.EIO
	}
	return f.File.Datasync()
}

// TestBrokenAfterFailedDatasync: after an fdatasync fails the journal says
// it is broken and refuses every write; opening it again (what a restart
// does) reads back everything that was acknowledged and writes again.
func TestBrokenAfterFailedDatasync(t *testing.T) {
	dir := testPath(t)
	fsys := &faultFS{}
	j := openT(t, dir, Options{FS: fsys})
	before := mustAppend(t, j, "EV_before", "acknowledged")
	select {
	case <-j.Broken():
		t.Fatal("broken before any failure")
	default:
	}
	fsys.failSync.Store(true)
	if _, _, err := j.Append(context.Background(), "EV_lost", time.Now(), []byte("x")); !errors.Is(err, syscall.EIO) {
		t.Fatalf("append during the failure: err = %v, want EIO", err)
	}
	select {
	case <-j.Broken():
	case <-time.After(5 * time.Second):
		t.Fatal("Broken() not closed after a failed fdatasync")
	}
	if err := j.BrokenErr(); err == nil || !strings.Contains(err.Error(), "fdatasync of segment") {
		t.Fatalf("BrokenErr = %v, want one naming the fdatasync", err)
	}
	// The disk is fine again, but what the failed fdatasync left is unknown:
	// the journal still refuses until it is read again.
	fsys.failSync.Store(false)
	if _, _, err := j.Append(context.Background(), "EV_after", time.Now(), []byte("x")); err == nil || !strings.Contains(err.Error(), "fdatasync of segment") {
		t.Fatalf("append after the failure: err = %v, want the broken error", err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}

	j = openT(t, dir, Options{FS: fsys})
	if j.BrokenErr() != nil {
		t.Fatalf("reopened journal is broken: %v", j.BrokenErr())
	}
	if ids := pendingIDs(t, j); !slices.Contains(ids, before.ID) {
		t.Fatalf("pending after reopen = %v, want %s among them", ids, before.ID)
	}
	mustAppend(t, j, "EV_after", "accepted again")
}

// TestRetryFailed: a failed record retried is pending again under its
// seq, no longer failed, and stays so across a reopen; retrying what is not
// failed is refused.
func TestRetryFailed(t *testing.T) {
	dir := testPath(t)
	j := openT(t, dir, Options{})
	ctx := context.Background()
	rec := mustAppend(t, j, "EV_retry", `{"event":"room_started"}`)
	other := mustAppend(t, j, "EV_other", "o")
	for _, seq := range []uint64{rec.Seq, other.Seq} {
		if err := j.Fail(ctx, seq, "sink said 500"); err != nil {
			t.Fatal(err)
		}
	}
	got, err := j.Retry(ctx, rec.Seq)
	if err != nil {
		t.Fatal(err)
	}
	if got.Seq != rec.Seq || got.ID != "EV_retry" || string(got.Body) != `{"event":"room_started"}` {
		t.Fatalf("Retry = %+v, want seq %d EV_retry with its body", got, rec.Seq)
	}
	if _, err := j.Retry(ctx, rec.Seq); !errors.Is(err, ErrNotFailed) {
		t.Fatalf("second retry: err = %v, want ErrNotFailed", err)
	}
	if _, err := j.Retry(ctx, 999); !errors.Is(err, ErrNotFailed) {
		t.Fatalf("retry of an unknown seq: err = %v, want ErrNotFailed", err)
	}
	check := func(j *Journal) {
		t.Helper()
		if ids := pendingIDs(t, j); !slices.Equal(ids, []string{"EV_retry"}) {
			t.Fatalf("pending = %v, want [EV_retry]", ids)
		}
		if r, err := j.Read(rec.Seq); err != nil || r.ID != "EV_retry" || string(r.Body) != `{"event":"room_started"}` {
			t.Fatalf("Read of the retried record = %+v, %v", r, err)
		}
		failed, err := j.Failed()
		if err != nil || len(failed) != 1 || failed[0].ID != "EV_other" {
			t.Fatalf("failed = %+v, %v; want only EV_other", failed, err)
		}
	}
	check(j)
	j.Close()
	j = openT(t, dir, Options{})
	check(j)
	// Done after the retry finishes it for good.
	if err := j.Done(ctx, rec.Seq); err != nil {
		t.Fatal(err)
	}
	if ids := pendingIDs(t, j); len(ids) != 0 {
		t.Fatalf("pending after done = %v", ids)
	}
}

// TestFailedRetention: failed.wal keeps at most FailedMaxCount records and
// none older than FailedMaxAge, and shrinks when it drops some.
func TestFailedRetention(t *testing.T) {
	dir := testPath(t)
	clock := newFakeClock()
	opts := Options{Now: clock.Now, FailedMaxAge: 24 * time.Hour, FailedMaxCount: 3}
	j := openT(t, dir, opts)
	ctx := context.Background()
	for i := range 6 {
		rec := mustAppend(t, j, "EV_"+string(rune('a'+i)), strings.Repeat("b", 4096))
		if err := j.Fail(ctx, rec.Seq, "gave up"); err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Hour)
	}
	failedIDs := func(j *Journal) []string {
		t.Helper()
		recs, err := j.Failed()
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, r := range recs {
			ids = append(ids, r.ID)
		}
		return ids
	}
	size := func() int64 {
		fi, err := os.Stat(filepath.Join(dir, failedName))
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	full := size()
	if _, err := j.prune(ctx); err != nil {
		t.Fatal(err)
	}
	if ids := failedIDs(j); !slices.Equal(ids, []string{"EV_d", "EV_e", "EV_f"}) {
		t.Fatalf("failed after the count bound = %v, want the newest three", ids)
	}
	if s := size(); s >= full*2/3 {
		t.Fatalf("failed.wal is %d bytes after dropping half its records, was %d", s, full)
	}
	// A day later EV_d and EV_e are past the age bound (EV_f failed 1 h
	// after EV_e): reopening applies it too.
	j.Close()
	clock.Advance(24*time.Hour - 2*time.Hour)
	j = openT(t, dir, opts)
	if ids := failedIDs(j); !slices.Equal(ids, []string{"EV_f"}) {
		t.Fatalf("failed after the age bound = %v, want [EV_f]", ids)
	}
	// What is kept is still readable and retryable after the rewrite.
	recs, _ := j.Failed()
	if _, err := j.Retry(ctx, recs[0].Seq); err != nil {
		t.Fatal(err)
	}
	if ids := pendingIDs(t, j); !slices.Equal(ids, []string{"EV_f"}) {
		t.Fatalf("pending = %v, want [EV_f]", ids)
	}
}

// TestRetryNotLostOnWriteFailure: a retry whose write to the log fails
// leaves the record among the failed ones, now and after a reopen; it is
// never neither failed nor pending.
func TestRetryNotLostOnWriteFailure(t *testing.T) {
	dir := testPath(t)
	fsys := &faultFS{}
	j := openT(t, dir, Options{FS: fsys})
	ctx := context.Background()
	rec := mustAppend(t, j, "EV_keep", "body")
	if err := j.Fail(ctx, rec.Seq, "gave up"); err != nil {
		t.Fatal(err)
	}
	fsys.failSegWrite.Store(true)
	if _, err := j.Retry(ctx, rec.Seq); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("retry during the failure: err = %v, want ENOSPC", err)
	}
	fsys.failSegWrite.Store(false)
	check := func(j *Journal) {
		t.Helper()
		failed, err := j.Failed()
		if err != nil || len(failed) != 1 || failed[0].ID != "EV_keep" {
			t.Fatalf("failed = %+v, %v; want EV_keep still failed", failed, err)
		}
	}
	check(j)
	j.Close()
	j = openT(t, dir, Options{FS: fsys})
	check(j)
	if _, err := j.Retry(ctx, rec.Seq); err != nil {
		t.Fatalf("retry once the disk is fine: %v", err)
	}
}
