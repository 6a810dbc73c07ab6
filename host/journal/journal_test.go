package journal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lkedge/lkedge/host/internal/proccpu"
)

// fakeClock is an injectable, manually advanced clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func testPath(tb testing.TB) string {
	return filepath.Join(tb.TempDir(), "sub", "journal")
}

func openT(tb testing.TB, path string, opts Options) *Journal {
	tb.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	j, err := Open(path, opts)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() { _ = j.Close() })
	return j
}

func mustAppend(tb testing.TB, j *Journal, id string, body string) Record {
	tb.Helper()
	rec, dup, err := j.Append(context.Background(), id, time.Now(), []byte(body))
	if err != nil {
		tb.Fatalf("Append(%q): %v", id, err)
	}
	if dup {
		tb.Fatalf("Append(%q): unexpected duplicate", id)
	}
	return rec
}

func pendingIDs(tb testing.TB, j *Journal) []string {
	tb.Helper()
	recs, err := j.Pending()
	if err != nil {
		tb.Fatalf("Pending: %v", err)
	}
	ids := make([]string, len(recs))
	for i, r := range recs {
		ids[i] = r.ID
	}
	return ids
}

func TestAppendPendingDoneRoundTrip(t *testing.T) {
	ctx := context.Background()
	received := time.Date(2025, 6, 1, 10, 11, 12, 345678901, time.UTC)
	tests := []struct {
		name string
		id   string
		body []byte
	}{
		{"json body", "EV_json", []byte(`{"event":"room_started","room":{"name":"r1"},"id":"EV_json"}`)},
		{"empty body", "EV_empty", nil},
		{"binary body", "EV_bin", []byte{0, 1, 2, 0xff, 0xfe, '\n', 0}},
		{"unicode id", "EV_ünïcødé", []byte("x")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := openT(t, testPath(t), Options{})
			rec, dup, err := j.Append(ctx, tt.id, received, tt.body)
			if err != nil || dup {
				t.Fatalf("Append = dup %v, err %v", dup, err)
			}
			if rec.Seq == 0 || rec.ID != tt.id || !bytes.Equal(rec.Body, tt.body) {
				t.Fatalf("Append returned %+v", rec)
			}
			if want := received.Truncate(time.Millisecond); !rec.ReceivedAt.Equal(want) {
				t.Fatalf("ReceivedAt = %v, want %v", rec.ReceivedAt, want)
			}
			got, err := j.Pending()
			if err != nil {
				t.Fatalf("Pending: %v", err)
			}
			if len(got) != 1 {
				t.Fatalf("Pending = %d records, want 1", len(got))
			}
			p := got[0]
			if p.Seq != rec.Seq || p.ID != rec.ID || !p.ReceivedAt.Equal(rec.ReceivedAt) || !bytes.Equal(p.Body, tt.body) {
				t.Fatalf("Pending[0] = %+v, want %+v", p, rec)
			}
			r, err := j.Read(rec.Seq)
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if r.Seq != rec.Seq || r.ID != rec.ID || !r.ReceivedAt.Equal(rec.ReceivedAt) || !bytes.Equal(r.Body, tt.body) {
				t.Fatalf("Read = %+v, want %+v", r, rec)
			}
			if err := j.Done(ctx, rec.Seq); err != nil {
				t.Fatalf("Done: %v", err)
			}
			if ids := pendingIDs(t, j); len(ids) != 0 {
				t.Fatalf("Pending after Done = %v, want none", ids)
			}
			if err := j.Done(ctx, rec.Seq); err == nil || !errors.Is(err, errNotPending) {
				t.Fatalf("second Done = %v, want not-pending error", err)
			}
			if _, err := j.Read(rec.Seq); !errors.Is(err, errNotPending) {
				t.Fatalf("Read after Done = %v, want not-pending error", err)
			}
		})
	}
}

func TestAppendRejectsBadIDs(t *testing.T) {
	j := openT(t, testPath(t), Options{})
	for _, id := range []string{"", strings.Repeat("x", maxIDLen+1)} {
		if _, _, err := j.Append(context.Background(), id, time.Now(), []byte("b")); err == nil {
			t.Errorf("Append(id of %d bytes) succeeded, want error", len(id))
		}
	}
}

func TestSeqIncreasesAcrossReopen(t *testing.T) {
	path := testPath(t)
	var last uint64
	for round := range 3 {
		j := openT(t, path, Options{})
		for i := range 5 {
			rec := mustAppend(t, j, fmt.Sprintf("EV_%d_%d", round, i), "b")
			if rec.Seq <= last {
				t.Fatalf("round %d: seq %d not greater than previous %d", round, rec.Seq, last)
			}
			last = rec.Seq
			if i%2 == 0 {
				if err := j.Done(context.Background(), rec.Seq); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := j.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
}

func TestDuplicate(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		// between runs after the first Append and before the second one; it
		// may return a different journal (reopen).
		between func(t *testing.T, j *Journal, path string, rec Record) *Journal
	}{
		{"while pending", func(t *testing.T, j *Journal, _ string, _ Record) *Journal { return j }},
		{"after done", func(t *testing.T, j *Journal, _ string, rec Record) *Journal {
			if err := j.Done(ctx, rec.Seq); err != nil {
				t.Fatal(err)
			}
			return j
		}},
		{"after fail", func(t *testing.T, j *Journal, _ string, rec Record) *Journal {
			if err := j.Fail(ctx, rec.Seq, "boom"); err != nil {
				t.Fatal(err)
			}
			return j
		}},
		{"after reopen", func(t *testing.T, j *Journal, path string, _ Record) *Journal {
			if err := j.Close(); err != nil {
				t.Fatal(err)
			}
			return openT(t, path, Options{})
		}},
		{"after done and reopen", func(t *testing.T, j *Journal, path string, rec Record) *Journal {
			if err := j.Done(ctx, rec.Seq); err != nil {
				t.Fatal(err)
			}
			if err := j.Close(); err != nil {
				t.Fatal(err)
			}
			return openT(t, path, Options{})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := testPath(t)
			j := openT(t, path, Options{})
			rec := mustAppend(t, j, "EV_dup", "first")
			j = tt.between(t, j, path, rec)
			got, dup, err := j.Append(ctx, "EV_dup", time.Now(), []byte("second"))
			if err != nil {
				t.Fatalf("Append: %v", err)
			}
			if !dup {
				t.Fatalf("second Append not reported as duplicate (got %+v)", got)
			}
			if got.Seq != 0 {
				t.Fatalf("duplicate returned record %+v, want zero", got)
			}
			recs, err := j.Pending()
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range recs {
				if string(r.Body) == "second" {
					t.Fatalf("duplicate was recorded: %+v", r)
				}
			}
		})
	}
}

// TestDedupWithinOneTransaction drives the committer's commit directly with
// a batch holding the same id twice, so both are guaranteed to share one
// transaction.
func TestDedupWithinOneTransaction(t *testing.T) {
	j := openT(t, testPath(t), Options{})
	mk := func(id, body string) *request {
		v, _ := encodeRecord(time.Now().UnixMilli(), id, []byte(body))
		return &request{kind: opAppend, ctx: context.Background(), id: id, value: v}
	}
	batch := []*request{mk("EV_a", "1"), mk("EV_b", "2"), mk("EV_a", "3")}
	before := j.txCount()
	res := j.commit(batch, nil)
	if n := j.txCount() - before; n != 1 {
		t.Fatalf("batch took %d transactions, want 1", n)
	}
	want := []bool{false, false, true}
	for i, r := range res {
		if r.err != nil {
			t.Fatalf("request %d: %v", i, r.err)
		}
		if r.dup != want[i] {
			t.Errorf("request %d dup = %v, want %v", i, r.dup, want[i])
		}
	}
	if ids := pendingIDs(t, j); strings.Join(ids, ",") != "EV_a,EV_b" {
		t.Fatalf("Pending ids = %v, want [EV_a EV_b]", ids)
	}
}

func TestDuplicateConcurrentSameID(t *testing.T) {
	j := openT(t, testPath(t), Options{})
	const n = 64
	var (
		wg       sync.WaitGroup
		accepted atomic.Int32
		start    = make(chan struct{})
	)
	for range n {
		wg.Go(func() {
			<-start
			_, dup, err := j.Append(context.Background(), "EV_same", time.Now(), []byte("b"))
			if err != nil {
				t.Errorf("Append: %v", err)
				return
			}
			if !dup {
				accepted.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	if got := accepted.Load(); got != 1 {
		t.Fatalf("%d appends accepted, want exactly 1", got)
	}
	if ids := pendingIDs(t, j); len(ids) != 1 {
		t.Fatalf("Pending = %v, want one record", ids)
	}
}

func TestDedupWindowExpiry(t *testing.T) {
	ctx := context.Background()
	const window = time.Hour
	tests := []struct {
		name      string
		done      bool // mark the first record done before the window passes
		advance   time.Duration
		wantDup   bool
		wantPrune int
	}{
		{"within window", true, window - time.Second, true, 0},
		{"expired and done", true, window + time.Second, false, 1},
		{"expired but still pending", false, window + time.Second, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			j := openT(t, testPath(t), Options{DedupWindow: window, Now: clock.Now})
			rec := mustAppend(t, j, "EV_w", "first")
			if tt.done {
				if err := j.Done(ctx, rec.Seq); err != nil {
					t.Fatal(err)
				}
			}
			clock.Advance(tt.advance)
			removed, err := j.prune(ctx)
			if err != nil {
				t.Fatalf("prune: %v", err)
			}
			if removed != tt.wantPrune {
				t.Fatalf("prune removed %d, want %d", removed, tt.wantPrune)
			}
			rec2, dup, err := j.Append(ctx, "EV_w", clock.Now(), []byte("second"))
			if err != nil {
				t.Fatal(err)
			}
			if dup != tt.wantDup {
				t.Fatalf("dup = %v, want %v", dup, tt.wantDup)
			}
			if !dup && rec2.Seq <= rec.Seq {
				t.Fatalf("re-accepted seq %d not after %d", rec2.Seq, rec.Seq)
			}
			// The re-accepted id must be remembered again (fresh window).
			if !dup {
				clock.Advance(window / 2)
				if _, dup, err := j.Append(ctx, "EV_w", clock.Now(), nil); err != nil || !dup {
					t.Fatalf("third Append: dup %v err %v, want duplicate", dup, err)
				}
			}
		})
	}
}

// TestPruneAtOpen checks that Open forgets exactly the expired ids and
// deletes the segments that hold nothing else.
func TestPruneAtOpen(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	path := testPath(t)
	opts := Options{DedupWindow: time.Hour, Now: clock.Now, SegmentSize: 1}
	j := openT(t, path, opts)
	for i := range 10 {
		rec := mustAppend(t, j, fmt.Sprintf("EV_old_%d", i), "b")
		if err := j.Done(ctx, rec.Seq); err != nil {
			t.Fatal(err)
		}
	}
	clock.Advance(2 * time.Hour)
	mustAppend(t, j, "EV_new", "b")
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j = openT(t, path, opts)
	if n := len(j.seen); n != 1 {
		t.Errorf("%d ids remembered after open, want 1", n)
	}
	segs, err := listSegments(OSFS{}, path)
	if err != nil {
		t.Fatal(err)
	}
	// EV_new's segment and the empty active one after it.
	if len(segs) != 2 {
		t.Errorf("%d segments after open, want 2", len(segs))
	}
	if _, dup, err := j.Append(ctx, "EV_old_3", clock.Now(), nil); err != nil || dup {
		t.Errorf("expired id: dup %v err %v, want accepted", dup, err)
	}
	if _, dup, err := j.Append(ctx, "EV_new", clock.Now(), nil); err != nil || !dup {
		t.Errorf("remembered id: dup %v err %v, want duplicate", dup, err)
	}
}

func TestFail(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	j := openT(t, testPath(t), Options{Now: clock.Now})
	a := mustAppend(t, j, "EV_a", "body a")
	b := mustAppend(t, j, "EV_b", "body b")
	clock.Advance(time.Minute)
	if err := j.Fail(ctx, a.Seq, "webhook handler: room not found"); err != nil {
		t.Fatalf("Fail: %v", err)
	}
	if ids := pendingIDs(t, j); strings.Join(ids, ",") != "EV_b" {
		t.Fatalf("Pending = %v, want [EV_b]", ids)
	}
	failed, err := j.Failed()
	if err != nil {
		t.Fatalf("Failed: %v", err)
	}
	if len(failed) != 1 {
		t.Fatalf("Failed = %d records, want 1", len(failed))
	}
	f := failed[0]
	if f.Seq != a.Seq || f.ID != "EV_a" || string(f.Body) != "body a" || !f.ReceivedAt.Equal(a.ReceivedAt) {
		t.Errorf("failed record = %+v, want %+v", f.Record, a)
	}
	if f.Reason != "webhook handler: room not found" {
		t.Errorf("Reason = %q", f.Reason)
	}
	if !f.FailedAt.Equal(clock.Now()) {
		t.Errorf("FailedAt = %v, want %v", f.FailedAt, clock.Now())
	}
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"fail again", func() error { return j.Fail(ctx, a.Seq, "x") }},
		{"done after fail", func() error { return j.Done(ctx, a.Seq) }},
		{"fail unknown seq", func() error { return j.Fail(ctx, 9999, "x") }},
		{"read failed", func() error { _, err := j.Read(a.Seq); return err }},
		{"read unknown seq", func() error { _, err := j.Read(9999); return err }},
	} {
		if err := tc.call(); !errors.Is(err, errNotPending) {
			t.Errorf("%s: err = %v, want not-pending", tc.name, err)
		}
	}
	if err := j.Done(ctx, b.Seq); err != nil {
		t.Fatal(err)
	}
}

func TestFailReasonTruncated(t *testing.T) {
	j := openT(t, testPath(t), Options{})
	rec := mustAppend(t, j, "EV_long", "b")
	reason := strings.Repeat("é", maxReasonLen) // 2 bytes per rune
	if err := j.Fail(context.Background(), rec.Seq, "x"+reason); err != nil {
		t.Fatal(err)
	}
	failed, err := j.Failed()
	if err != nil || len(failed) != 1 {
		t.Fatalf("Failed = %v, %v", failed, err)
	}
	if r := failed[0].Reason; len(r) > maxReasonLen || !strings.HasPrefix("x"+reason, r) || len(r) < maxReasonLen-3 {
		t.Fatalf("reason truncated to %d bytes (prefix ok: %v)", len(r), strings.HasPrefix("x"+reason, r))
	}
}

// TestPendingAfterReopen is the crash-recovery contract: after reopening,
// Pending returns exactly the records that were neither done nor failed, in
// append order, with their bodies intact.
func TestPendingAfterReopen(t *testing.T) {
	ctx := context.Background()
	path := testPath(t)
	j := openT(t, path, Options{})
	var want []Record
	for i := range 20 {
		rec := mustAppend(t, j, fmt.Sprintf("EV_%02d", i), fmt.Sprintf(`{"n":%d}`, i))
		switch {
		case i%3 == 0:
			if err := j.Done(ctx, rec.Seq); err != nil {
				t.Fatal(err)
			}
		case i == 7:
			if err := j.Fail(ctx, rec.Seq, "gave up"); err != nil {
				t.Fatal(err)
			}
		default:
			want = append(want, rec)
		}
	}
	// Simulate the crash as closely as a test can: no Done for the rest.
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j = openT(t, path, Options{})
	got, err := j.Pending()
	if err != nil {
		t.Fatalf("Pending: %v", err)
	}
	if len(got) != len(want) {
		t.Fatalf("Pending = %d records, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Seq != w.Seq || g.ID != w.ID || !g.ReceivedAt.Equal(w.ReceivedAt) || !bytes.Equal(g.Body, w.Body) {
			t.Errorf("Pending[%d] = %+v, want %+v", i, g, w)
		}
		if r, err := j.Read(w.Seq); err != nil || r.ID != w.ID || !bytes.Equal(r.Body, w.Body) {
			t.Errorf("Read(%d) = %+v, %v; want %+v", w.Seq, r, err, w)
		}
	}
	failed, err := j.Failed()
	if err != nil || len(failed) != 1 || failed[0].ID != "EV_07" {
		t.Fatalf("Failed = %+v, %v; want EV_07", failed, err)
	}
}

func TestConcurrentAppends(t *testing.T) {
	const goroutines, perG = 64, 50
	j := openT(t, testPath(t), Options{})
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		seqs = make(map[uint64]string, goroutines*perG)
	)
	before := j.txCount()
	for g := range goroutines {
		wg.Go(func() {
			for i := range perG {
				id := fmt.Sprintf("EV_%d_%d", g, i)
				rec, dup, err := j.Append(context.Background(), id, time.Now(), []byte(id))
				if err != nil || dup {
					t.Errorf("Append(%s): dup %v err %v", id, dup, err)
					return
				}
				mu.Lock()
				if prev, ok := seqs[rec.Seq]; ok {
					t.Errorf("seq %d assigned to both %s and %s", rec.Seq, prev, id)
				}
				seqs[rec.Seq] = id
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	txs := j.txCount() - before
	t.Logf("%d appends in %d transactions (%.1f per fsync)", goroutines*perG, txs, float64(goroutines*perG)/float64(txs))
	if len(seqs) != goroutines*perG {
		t.Fatalf("%d distinct seqs, want %d", len(seqs), goroutines*perG)
	}
	recs, err := j.Pending()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != goroutines*perG {
		t.Fatalf("Pending = %d records, want %d", len(recs), goroutines*perG)
	}
	for i, r := range recs {
		if i > 0 && r.Seq <= recs[i-1].Seq {
			t.Fatalf("Pending not in seq order at %d", i)
		}
		if seqs[r.Seq] != r.ID || string(r.Body) != r.ID {
			t.Fatalf("record %+v does not match what Append returned (%s)", r, seqs[r.Seq])
		}
	}
}

func TestOpenInUse(t *testing.T) {
	path := testPath(t)
	openT(t, path, Options{})
	start := time.Now()
	j2, err := Open(path, Options{Logger: slog.New(slog.DiscardHandler)})
	elapsed := time.Since(start)
	if err == nil {
		_ = j2.Close()
		t.Fatal("second Open succeeded, want in-use error")
	}
	if !strings.Contains(err.Error(), "in use by another process") || !errors.Is(err, ErrInUse) {
		t.Fatalf("second Open error = %v, want in-use error", err)
	}
	if elapsed > 2*time.Second {
		t.Fatalf("second Open took %v, want about 1s", elapsed)
	}
}

func TestMethodsAfterClose(t *testing.T) {
	ctx := context.Background()
	j := openT(t, testPath(t), Options{})
	rec := mustAppend(t, j, "EV_a", "b")
	if err := j.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := j.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	tests := []struct {
		name string
		call func() error
	}{
		{"Append", func() error { _, _, err := j.Append(ctx, "EV_b", time.Now(), nil); return err }},
		{"Done", func() error { return j.Done(ctx, rec.Seq) }},
		{"Fail", func() error { return j.Fail(ctx, rec.Seq, "x") }},
		{"Pending", func() error { _, err := j.Pending(); return err }},
		{"Read", func() error { _, err := j.Read(rec.Seq); return err }},
		{"Failed", func() error { _, err := j.Failed(); return err }},
		{"prune", func() error { _, err := j.prune(ctx); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); !errors.Is(err, ErrClosed) {
				t.Fatalf("err = %v, want ErrClosed", err)
			}
		})
	}
}

// TestCloseDuringAppends checks that Close neither hangs nor loses an
// acknowledged record: every Append that succeeded is pending after reopen,
// and every other Append failed with ErrClosed.
func TestCloseDuringAppends(t *testing.T) {
	path := testPath(t)
	j := openT(t, path, Options{})
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		acked = map[uint64]bool{}
	)
	for g := range 16 {
		wg.Go(func() {
			for i := 0; ; i++ {
				rec, _, err := j.Append(context.Background(), fmt.Sprintf("EV_%d_%d", g, i), time.Now(), []byte("b"))
				if err != nil {
					if !errors.Is(err, ErrClosed) {
						t.Errorf("Append: %v, want ErrClosed", err)
					}
					return
				}
				mu.Lock()
				acked[rec.Seq] = true
				mu.Unlock()
			}
		})
	}
	time.Sleep(50 * time.Millisecond)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	j = openT(t, path, Options{})
	recs, err := j.Pending()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != len(acked) {
		t.Fatalf("Pending = %d records, %d acknowledged", len(recs), len(acked))
	}
	for _, r := range recs {
		if !acked[r.Seq] {
			t.Fatalf("seq %d pending but never acknowledged", r.Seq)
		}
	}
}

func TestContextCanceled(t *testing.T) {
	j := openT(t, testPath(t), Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := j.Append(ctx, "EV_c", time.Now(), nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Append with canceled ctx: %v", err)
	}
	if err := j.Done(ctx, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("Done with canceled ctx: %v", err)
	}
	if ids := pendingIDs(t, j); len(ids) != 0 {
		t.Fatalf("Pending = %v, want none", ids)
	}
	// The id was not remembered, so a retry is accepted.
	mustAppend(t, j, "EV_c", "b")
}

// FuzzDecode checks that no input makes the decoders panic, and that
// encode/decode round-trips.
func FuzzDecode(f *testing.F) {
	v, _ := encodeRecord(123, "EV_1", []byte("body"))
	f.Add(v)
	f.Add(encodeFailed(5, "why", v))
	f.Add([]byte{})
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = decodeRecord(1, b)
		_, _ = decodeFailed(1, b)
		if len(b) > 0 {
			id := string(b[:1+len(b)/3])
			body := b[len(id):]
			v, _ := encodeRecord(int64(len(b)), id, body)
			rec, err := decodeRecord(7, v)
			if err != nil || rec.ID != id || !bytes.Equal(rec.Body, body) || rec.ReceivedAt.UnixMilli() != int64(len(b)) {
				t.Fatalf("round trip: %+v, %v", rec, err)
			}
		}
	})
}

func TestTruncate(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		want string
	}{
		{"abc", 5, "abc"},
		{"abcdef", 3, "abc"},
		{"aé", 2, "a"},   // é is 2 bytes; cut in the middle
		{"a€", 3, "a"},   // € is 3 bytes
		{"a€b", 4, "a€"}, // exact boundary
		{"\uFFFDx", 3, "\uFFFD"},
	}
	for _, tt := range tests {
		if got := truncate(tt.in, tt.n); got != tt.want {
			t.Errorf("truncate(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
}

func BenchmarkAppend(b *testing.B) {
	body := bytes.Repeat([]byte(`{"event":"participant_joined"}`), 30) // 900 bytes
	report := func(b *testing.B, j *Journal, txBefore uint64, appends int) {
		if txs := j.txCount() - txBefore; txs > 0 {
			b.ReportMetric(float64(appends)/float64(txs), "events/fsync")
		}
	}
	b.Run("serial", func(b *testing.B) {
		j := openT(b, filepath.Join(b.TempDir(), "j.db"), Options{})
		ctx := context.Background()
		before := j.txCount()
		n := 0
		for b.Loop() {
			if _, _, err := j.Append(ctx, fmt.Sprintf("EV_%d", n), time.Now(), body); err != nil {
				b.Fatal(err)
			}
			n++
		}
		report(b, j, before, n)
	})
	b.Run("parallel", func(b *testing.B) {
		j := openT(b, filepath.Join(b.TempDir(), "j.db"), Options{})
		ctx := context.Background()
		var next atomic.Uint64
		before := j.txCount()
		b.SetParallelism(32)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				id := fmt.Sprintf("EV_%d", next.Add(1))
				if _, _, err := j.Append(ctx, id, time.Now(), body); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.StopTimer()
		report(b, j, before, int(next.Load()))
	})
}

// BenchmarkAppendRate appends at a fixed rate, as LiveKit's webhooks
// arrive in an open loop, and reports the process's CPU per append (at
// such rates few appends share a commit, so each pays most of an
// fdatasync) and the median and 99th percentile of an append's latency,
// which a webhook's answer waits for.
func BenchmarkAppendRate(b *testing.B) {
	body := bytes.Repeat([]byte(`{"event":"participant_joined"}`), 30) // 900 bytes
	for _, rate := range []int{1000, 2000, 4000} {
		b.Run(fmt.Sprintf("%d/s", rate), func(b *testing.B) {
			j := openT(b, filepath.Join(b.TempDir(), "j"), Options{})
			ctx := context.Background()
			interval := time.Second / time.Duration(rate)
			var wg sync.WaitGroup
			lat := make([]time.Duration, b.N)
			before := j.txCount()
			cpu0 := proccpu.Used()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
				wg.Go(func() {
					t0 := time.Now()
					if _, _, err := j.Append(ctx, fmt.Sprintf("EV_%d", i), time.Now(), body); err != nil {
						b.Error(err)
					}
					lat[i] = time.Since(t0)
				})
			}
			wg.Wait()
			b.ReportMetric(float64(proccpu.Used()-cpu0)/float64(b.N), "cpu-ns/op")
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2]), "p50-ns")
			b.ReportMetric(float64(lat[len(lat)*99/100]), "p99-ns")
			if txs := j.txCount() - before; txs > 0 {
				b.ReportMetric(float64(b.N)/float64(txs), "events/fsync")
			}
		})
	}
}
