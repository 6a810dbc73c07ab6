package journal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lkedge/lkedge/host/internal/proccpu"
)

// writeAfterFrames writes b into a journal file gap bytes after its last
// complete frame, where a commit torn by a crash (or a bad disk) leaves its
// bytes: over the active segment's zero-filled tail when it has one.
func writeAfterFrames(t *testing.T, path string, gap int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	end, err := scanFrames(osFile{f}, func(frame) error { return nil })
	if err != nil && !errors.Is(err, errZeroTail) {
		t.Fatalf("scan %s before writing into it: %v", path, err)
	}
	if _, err := f.WriteAt(b, end+gap); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func lastSegment(t *testing.T, dir string) string {
	t.Helper()
	segs, err := listSegments(OSFS{}, dir)
	if err != nil || len(segs) == 0 {
		t.Fatalf("segments of %s: %v, %v", dir, segs, err)
	}
	return segs[len(segs)-1].path
}

// TestCorruptRecords writes frames with a valid checksum but a payload that
// is not a record and checks that reading reports the bad seq instead of
// panicking, while the good records are still returned.
func TestCorruptRecords(t *testing.T) {
	tooLong := []byte{recordVersion, 0, 0, 0, 0, 0, 0, 0, 0, 50, 'a'}
	hugeVarint := append([]byte{recordVersion, 0, 0, 0, 0, 0, 0, 0, 0}, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01)
	goodRecord, _ := encodeRecord(1, "EV_x", []byte("b"))
	tests := []struct {
		name    string
		failed  bool // into failed.wal rather than the active segment
		payload []byte
	}{
		{"pending empty", false, []byte{}},
		{"pending short", false, []byte{recordVersion, 1, 2}},
		{"pending bad version", false, append([]byte{9}, goodRecord[1:]...)},
		{"pending id length too long", false, tooLong},
		{"pending overflowing varint", false, hugeVarint},
		{"pending truncated varint", false, []byte{recordVersion, 0, 0, 0, 0, 0, 0, 0, 0, 0x80}},
		{"pending empty id", false, []byte{recordVersion, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
		{"failed garbage", true, []byte("garbage")},
		{"failed bad reason length", true, []byte{failedVersion, 0, 0, 0, 0, 0, 0, 0, 0, 99}},
		{"failed corrupt embedded record", true, encodeFailed(1, "r", tooLong)},
	}
	const badSeq = 4242
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := testPath(t)
			j := openT(t, dir, Options{})
			good := mustAppend(t, j, "EV_good", "fine")
			if err := j.Fail(context.Background(), mustAppend(t, j, "EV_failed", "f").Seq, "r"); err != nil {
				t.Fatal(err)
			}
			if err := j.Close(); err != nil {
				t.Fatal(err)
			}
			kind, path := frameAppend, lastSegment(t, dir)
			if tt.failed {
				kind, path = frameFail, filepath.Join(dir, failedName)
			}
			// Failed now, or the retention bound would drop it at Open.
			writeAfterFrames(t, path, 0, appendFrame(nil, kind, badSeq, time.Now().UnixMilli(), tt.payload))

			j = openT(t, dir, Options{})
			var (
				ids  []string
				rerr error
			)
			if tt.failed {
				var recs []FailedRecord
				recs, rerr = j.Failed()
				for _, r := range recs {
					ids = append(ids, r.ID)
				}
				if !slices.Equal(ids, []string{"EV_failed"}) {
					t.Fatalf("failed ids = %v, want the intact EV_failed", ids)
				}
			} else {
				var recs []Record
				recs, rerr = j.Pending()
				for _, r := range recs {
					ids = append(ids, r.ID)
				}
				if !slices.Equal(ids, []string{"EV_good"}) {
					t.Fatalf("pending ids = %v, want the intact EV_good", ids)
				}
			}
			if rerr == nil || !strings.Contains(rerr.Error(), fmt.Sprintf("seq %d", badSeq)) {
				t.Fatalf("read error = %v, want one naming seq %d", rerr, badSeq)
			}
			if tt.failed {
				return
			}
			// A corrupt pending record can still be moved out of replay, and
			// the journal goes on after it.
			if err := j.Fail(context.Background(), badSeq, "corrupt"); err != nil {
				t.Fatalf("Fail(corrupt): %v", err)
			}
			if recs, err := j.Pending(); err != nil || len(recs) != 1 || recs[0].Seq != good.Seq {
				t.Fatalf("Pending after failing corrupt record = %+v, %v", recs, err)
			}
			if next := mustAppend(t, j, "EV_next", "n"); next.Seq <= badSeq {
				t.Fatalf("seq after the corrupt record = %d, want above %d", next.Seq, badSeq)
			}
		})
	}
}

// TestTornWrite: whatever a crash leaves after the last complete frame (a
// short frame, a frame whose checksum fails) is cut off at Open; every
// acknowledged record survives and the journal writes on after it.
func TestTornWrite(t *testing.T) {
	whole := appendFrame(nil, frameAppend, 99, 1, []byte("never acknowledged"))
	flipped := slices.Clone(whole)
	flipped[len(flipped)-1] ^= 1
	// The frame of the append of EV_b below: a frame left that far into
	// the zeros would sit right after it.
	recB, _ := encodeRecord(0, "EV_b", []byte("b"))
	frameB := int64(len(appendFrame(nil, frameAppend, 0, 0, recB)))
	tests := []struct {
		name   string
		failed bool
		gap    int64 // zeros before the tail: a commit whose start never reached the disk
		tail   []byte
	}{
		{"half a header", false, 0, whole[:10]},
		{"header without payload", false, 0, whole[:frameHdrLen+3]},
		{"checksum mismatch", false, 0, flipped},
		{"huge length", false, 0, append([]byte{0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff}, whole[8:]...)},
		// A whole frame in the zero-filled tail must not come back to life
		// once later commits fill the zeros before it.
		{"whole frame after zeros", false, frameB, whole},
		{"failed file torn", true, 0, whole[:frameHdrLen+1]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			dir := testPath(t)
			j := openT(t, dir, Options{})
			a := mustAppend(t, j, "EV_a", "a")
			if err := j.Fail(ctx, mustAppend(t, j, "EV_f", "f").Seq, "why"); err != nil {
				t.Fatal(err)
			}
			if err := j.Close(); err != nil {
				t.Fatal(err)
			}
			path := lastSegment(t, dir)
			if tt.failed {
				path = filepath.Join(dir, failedName)
			}
			writeAfterFrames(t, path, tt.gap, tt.tail)

			for round := range 2 { // the second open reads what the first wrote after the cut
				j = openT(t, dir, Options{})
				recs, err := j.Pending()
				if err != nil {
					t.Fatalf("round %d: Pending: %v", round, err)
				}
				if len(recs) != round+1 || recs[0].Seq != a.Seq || string(recs[0].Body) != "a" {
					t.Fatalf("round %d: pending = %+v", round, recs)
				}
				failed, err := j.Failed()
				if err != nil || len(failed) != 1 || failed[0].ID != "EV_f" {
					t.Fatalf("round %d: failed = %+v, %v", round, failed, err)
				}
				if round == 0 {
					mustAppend(t, j, "EV_b", "b")
				}
				if err := j.Close(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// TestCorruptOlderSegment: damage in a segment that is not the last cannot
// be a torn write; Open still starts, and Pending returns what it could read
// together with an error naming the segment.
func TestCorruptOlderSegment(t *testing.T) {
	dir := testPath(t)
	j := openT(t, dir, Options{SegmentSize: 1}) // one commit per segment
	for i := range 3 {
		mustAppend(t, j, fmt.Sprintf("EV_%d", i), "body")
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	segs, err := listSegments(OSFS{}, dir)
	if err != nil || len(segs) != 4 {
		t.Fatalf("segments = %d, %v; want 4", len(segs), err)
	}
	b, err := os.ReadFile(segs[1].path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 1
	if err := os.WriteFile(segs[1].path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	j = openT(t, dir, Options{})
	recs, err := j.Pending()
	if err == nil || !strings.Contains(err.Error(), filepath.Base(segs[1].path)) {
		t.Fatalf("Pending error = %v, want one naming %s", err, filepath.Base(segs[1].path))
	}
	var ids []string
	for _, r := range recs {
		ids = append(ids, r.ID)
	}
	if !slices.Equal(ids, []string{"EV_0", "EV_2"}) {
		t.Fatalf("pending = %v, want EV_0 and EV_2", ids)
	}
}

// TestSegmentsDropped: segments go once everything in them is done or
// failed and their ids left the window, oldest first; a record still
// pending keeps its segment and every later one, so a restart replays the
// same state.
func TestSegmentsDropped(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	dir := testPath(t)
	opts := Options{DedupWindow: time.Minute, Now: clock.Now, SegmentSize: 1}
	j := openT(t, dir, opts)
	var recs []Record
	for i := range 6 {
		recs = append(recs, mustAppend(t, j, fmt.Sprintf("EV_%d", i), "body"))
	}
	count := func() int {
		segs, err := listSegments(OSFS{}, dir)
		if err != nil {
			t.Fatal(err)
		}
		return len(segs)
	}
	if n := count(); n != 7 {
		t.Fatalf("%d segments, want 7", n)
	}
	for _, r := range recs {
		if r.ID == "EV_2" {
			continue // stays pending
		}
		if err := j.Done(ctx, r.Seq); err != nil {
			t.Fatal(err)
		}
	}
	if n := count(); n < 7 {
		t.Fatalf("segments dropped within the dedup window: %d left", n)
	}
	clock.Advance(2 * time.Minute)
	if _, err := j.prune(ctx); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, j, "EV_later", "x") // a commit: dropping happens after writes
	// EV_0's and EV_1's segments go; EV_2's pins itself and what follows.
	segs, err := listSegments(OSFS{}, dir)
	if err != nil {
		t.Fatal(err)
	}
	if segs[0].first != recs[2].Seq {
		t.Fatalf("oldest segment starts at seq %d, want %d (EV_2's)", segs[0].first, recs[2].Seq)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j = openT(t, dir, opts)
	if ids := pendingIDs(t, j); !slices.Equal(ids, []string{"EV_2", "EV_later"}) {
		t.Fatalf("pending after reopen = %v, want EV_2 and EV_later", ids)
	}
	if err := j.Done(ctx, recs[2].Seq); err != nil {
		t.Fatal(err)
	}
	clock.Advance(2 * time.Minute)
	mustAppend(t, j, "EV_last", "x")
	if n := count(); n != 3 {
		t.Fatalf("%d segments left, want 3 (EV_later's, EV_last's, the active one)", n)
	}
}

// TestZeroFilledTail: the active segment is zero-filled ahead of its frames,
// within its size, and reopening it reads the zeros as the end of the log,
// without a warning about a torn write.
func TestZeroFilledTail(t *testing.T) {
	tests := []struct {
		name        string
		segmentSize int64
		wantSize    func(end int64) int64 // the file's size, given where the frames end
	}{
		{"default segment", 0, func(end int64) int64 { return end + zeroChunk }},
		{"filled up to the segment's size", 100, func(int64) int64 { return 100 }},
		{"segment of one commit, not filled", 1, func(end int64) int64 { return end }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := testPath(t)
			j := openT(t, dir, Options{SegmentSize: tt.segmentSize})
			a := mustAppend(t, j, "EV_a", "a")
			if err := j.Close(); err != nil {
				t.Fatal(err)
			}
			path := lastSegment(t, dir)
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			end, scanErr := scanFrames(osFile{f}, func(frame) error { return nil })
			st, err := f.Stat()
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			if want := tt.wantSize(end); st.Size() != want || (want > end) != errors.Is(scanErr, errZeroTail) {
				t.Fatalf("frames end at %d, file is %d bytes (want %d), scan: %v", end, st.Size(), want, scanErr)
			}

			var logs bytes.Buffer
			j = openT(t, dir, Options{SegmentSize: tt.segmentSize, Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))})
			if recs, err := j.Pending(); err != nil || len(recs) != 1 || recs[0].Seq != a.Seq {
				t.Fatalf("pending after reopening = %+v, %v", recs, err)
			}
			b := mustAppend(t, j, "EV_b", "b")
			if b.Seq != a.Seq+1 {
				t.Fatalf("seq after reopening = %d, want %d", b.Seq, a.Seq+1)
			}
			if logs.Len() > 0 {
				t.Fatalf("reopening logged: %s", logs.String())
			}
		})
	}
}

// BenchmarkCommitSpace is what zero-filling the active segment is for: a
// 3 KiB write and an fdatasync, the shape of a commit at a few thousand
// events per second, at the end of a growing file against over space
// already zero-filled and synced. Each op is one commit.
func BenchmarkCommitSpace(b *testing.B) {
	buf := make([]byte, 3<<10)
	for _, filled := range []bool{false, true} {
		name := map[bool]string{false: "growing", true: "zero-filled"}[filled]
		b.Run(name, func(b *testing.B) {
			f, err := os.Create(filepath.Join(b.TempDir(), "segment"))
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			if filled {
				if err := zeroFill(osFile{f}, 0, int64(b.N)*int64(len(buf))); err != nil {
					b.Fatal(err)
				}
				if err := f.Sync(); err != nil {
					b.Fatal(err)
				}
			}
			lat := make([]time.Duration, 0, b.N)
			cpu0 := proccpu.Used()
			b.ResetTimer()
			for i := range b.N {
				start := time.Now()
				if _, err := f.WriteAt(buf, int64(i)*int64(len(buf))); err != nil {
					b.Fatal(err)
				}
				if err := syscall.Fdatasync(int(f.Fd())); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
			}
			b.StopTimer()
			b.ReportMetric(float64(proccpu.Used()-cpu0)/float64(b.N), "cpu-ns/op")
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2]), "p50-ns")
			b.ReportMetric(float64(lat[len(lat)*99/100]), "p99-ns")
		})
	}
}
