package coord_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/lkedge/lkedge/host/coord"
	"github.com/lkedge/lkedge/host/coord/coordtest"
)

func TestInProcessContract(t *testing.T) {
	// The real-clock expiry subtest costs about a second; -short skips it,
	// TestInProcessExpiry below covers expiry with a fake clock either way.
	// One instance is the whole "cluster": replica subtests take two
	// handles on it, as two Consul coordinators share one agent.
	shared := coord.NewInProcess(nil)
	coordtest.Run(t, func(t *testing.T) coord.Coordinator {
		return shared
	}, coordtest.Options{SkipExpiry: testing.Short()})
}

// fakeClock is a manually advanced clock for expiry tests.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestInProcessExpiry(t *testing.T) {
	const ttl = 10 * time.Second
	tests := []struct {
		name        string
		advance     time.Duration
		wantAcquire bool // can another caller take the lock after advance?
		wantRelease bool // does Release report the lock held after advance?
		wantListed  bool
	}{
		{"fresh", 0, false, true, true},
		{"just before expiry", ttl - time.Nanosecond, false, true, true},
		{"at expiry", ttl, true, false, false},
		{"long after", time.Hour, true, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			newLocked := func() (*coord.InProcess, *fakeClock) {
				clk := newFakeClock()
				c := coord.NewInProcess(clk.Now)
				if ok, err := c.Acquire(ctx, "lock", ttl); !ok || err != nil {
					t.Fatalf("Acquire = %v, %v", ok, err)
				}
				clk.Advance(tc.advance)
				return c, clk
			}

			c, clk := newLocked()
			locks, err := c.Locks(ctx, "")
			if err != nil {
				t.Fatal(err)
			}
			if got := len(locks) == 1; got != tc.wantListed {
				t.Errorf("Locks = %v, want listed %v", locks, tc.wantListed)
			}
			if ok, err := c.Acquire(ctx, "lock", ttl); ok != tc.wantAcquire || err != nil {
				t.Errorf("second Acquire = %v, %v; want %v", ok, err, tc.wantAcquire)
			}
			if tc.wantAcquire {
				// The new holder's times come from the clock at reacquisition.
				locks, _ := c.Locks(ctx, "lock")
				if len(locks) != 1 || !locks[0].AcquiredAt.Equal(clk.Now()) || !locks[0].ExpiresAt.Equal(clk.Now().Add(ttl)) {
					t.Errorf("reacquired lock = %+v, want acquired now with ttl %v", locks, ttl)
				}
			}

			c, _ = newLocked()
			if ok, err := c.Release(ctx, "lock"); ok != tc.wantRelease || err != nil {
				t.Errorf("Release = %v, %v; want %v", ok, err, tc.wantRelease)
			}
			if ok, _ := c.Acquire(ctx, "lock", ttl); !ok {
				t.Error("Acquire after Release = false")
			}
		})
	}
}

func TestInProcessLockTimes(t *testing.T) {
	clk := newFakeClock()
	c := coord.NewInProcess(clk.Now)
	ctx := t.Context()
	start := clk.Now()
	c.Acquire(ctx, "b", time.Minute)
	clk.Advance(time.Second)
	c.Acquire(ctx, "a", 2*time.Second)
	locks, err := c.Locks(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	want := []coord.LockInfo{
		{Name: "a", AcquiredAt: start.Add(time.Second), ExpiresAt: start.Add(3 * time.Second)},
		{Name: "b", AcquiredAt: start, ExpiresAt: start.Add(time.Minute)},
	}
	if !slices.Equal(locks, want) {
		t.Errorf("Locks = %+v, want %+v", locks, want)
	}
	clk.Advance(2 * time.Second) // "a" lapses
	if locks, _ := c.Locks(ctx, ""); len(locks) != 1 || locks[0].Name != "b" {
		t.Errorf("Locks after a lapsed = %+v, want only b", locks)
	}
}

func TestInProcessBadInput(t *testing.T) {
	c := coord.NewInProcess(nil)
	ctx := t.Context()
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	tests := []struct {
		name string
		call func() error
	}{
		{"zero ttl", func() error { _, err := c.Acquire(ctx, "l", 0); return err }},
		{"negative ttl", func() error { _, err := c.Acquire(ctx, "l", -time.Second); return err }},
		{"empty lock name", func() error { _, err := c.Acquire(ctx, "", time.Second); return err }},
		{"publish empty type", func() error { return c.Publish(ctx, coord.Event{}) }},
		{"subscribe empty type", func() error { _, err := c.Subscribe(ctx, ""); return err }},
		{"acquire canceled", func() error { _, err := c.Acquire(canceled, "l", time.Second); return err }},
		{"release canceled", func() error { _, err := c.Release(canceled, "l"); return err }},
		{"locks canceled", func() error { _, err := c.Locks(canceled, ""); return err }},
		{"publish canceled", func() error { return c.Publish(canceled, coord.Event{Type: "t"}) }},
		{"subscribe canceled", func() error { _, err := c.Subscribe(canceled, "t"); return err }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); err == nil {
				t.Error("succeeded, want error")
			}
		})
	}
	if locks, _ := c.Locks(ctx, ""); len(locks) != 0 {
		t.Errorf("bad calls left locks %+v", locks)
	}
}

func TestInProcessSlowSubscriberNeverBlocksPublish(t *testing.T) {
	c := coord.NewInProcess(nil)
	ctx := t.Context()
	slow, err := c.Subscribe(ctx, "t") // never read until the end
	if err != nil {
		t.Fatal(err)
	}
	fast, err := c.Subscribe(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	const n = 200
	var got []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range fast {
			got = append(got, string(ev.Payload))
			if len(got) == n {
				return
			}
		}
	}()
	published := make(chan struct{})
	go func() {
		defer close(published)
		for i := range n {
			if err := c.Publish(ctx, coord.Event{Type: "t", Payload: fmt.Appendf(nil, "%d", i)}); err != nil {
				t.Errorf("Publish: %v", err)
			}
			// Pace the publisher so the fast reader keeps up and only the
			// slow subscriber overflows.
			for len(fast) > 32 {
				runtime.Gosched()
			}
		}
	}()
	select {
	case <-published:
	case <-time.After(5 * time.Second):
		t.Fatal("Publish blocked on a slow subscriber")
	}
	<-done
	for i, p := range got {
		if p != fmt.Sprint(i) {
			t.Fatalf("fast subscriber event %d = %s; want in-order delivery", i, p)
		}
	}
	if len(slow) != 64 {
		t.Errorf("slow subscriber buffered %d events, want 64", len(slow))
	}
	if d := c.Dropped(); d != n-64 {
		t.Errorf("Dropped = %d, want %d", d, n-64)
	}
}

func TestInProcessPayloadCopied(t *testing.T) {
	c := coord.NewInProcess(nil)
	ch, err := c.Subscribe(t.Context(), "t")
	if err != nil {
		t.Fatal(err)
	}
	buf := []byte("before")
	if err := c.Publish(t.Context(), coord.Event{Type: "t", Payload: buf}); err != nil {
		t.Fatal(err)
	}
	copy(buf, "AFTER!")
	if ev := <-ch; string(ev.Payload) != "before" {
		t.Errorf("payload = %q; the publisher's later writes leaked in", ev.Payload)
	}
}

// TestInProcessUnsubscribeForgets checks that canceled subscriptions are
// removed, not just closed: publishing afterwards must neither panic on a
// closed channel nor count drops for them, and no goroutines stay behind.
func TestInProcessUnsubscribeForgets(t *testing.T) {
	c := coord.NewInProcess(nil)
	before := runtime.NumGoroutine()
	for range 100 {
		ctx, cancel := context.WithCancel(t.Context())
		ch, err := c.Subscribe(ctx, "t")
		if err != nil {
			t.Fatal(err)
		}
		cancel()
		for range ch {
		}
	}
	for range 100 {
		if err := c.Publish(t.Context(), coord.Event{Type: "t"}); err != nil {
			t.Fatal(err)
		}
	}
	if d := c.Dropped(); d != 0 {
		t.Errorf("Dropped = %d for canceled subscribers, want 0", d)
	}
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if after := runtime.NumGoroutine(); after > before {
		t.Errorf("goroutines grew from %d to %d", before, after)
	}
}

func TestInProcessConcurrentUse(t *testing.T) {
	// Exercise every method at once under -race.
	c := coord.NewInProcess(nil)
	ctx := t.Context()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			name := fmt.Sprintf("l%d", i%3)
			for range 50 {
				c.Acquire(ctx, name, time.Minute)
				c.Locks(ctx, "l")
				c.Release(ctx, name)
				c.Publish(ctx, coord.Event{Type: "t"})
			}
		})
		wg.Go(func() {
			for range 20 {
				sctx, cancel := context.WithCancel(ctx)
				ch, err := c.Subscribe(sctx, "t")
				if err != nil {
					t.Error(err)
					cancel()
					return
				}
				cancel()
				for range ch {
				}
			}
		})
	}
	wg.Wait()
}

// TestInProcessAdmissionWindow: an admitted id is a duplicate for another
// owner and the same ticket for its own for ten minutes, then forgotten.
func TestInProcessAdmissionWindow(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	c := coord.NewInProcess(clock.Now)
	first, err := c.Admit(ctx, "EV_window", "room:RM_w", "r1/7")
	if err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		after time.Duration
		owner string
		want  error
		same  bool // the first ticket again
	}{
		{after: 0, owner: "r2/9", want: coord.ErrDuplicate},
		{after: 9 * time.Minute, owner: "r1/7", same: true},
		{after: 59 * time.Second, owner: "r2/9", want: coord.ErrDuplicate},
		{after: 2 * time.Second, owner: "r2/9"}, // 10 min 1 s after: forgotten
	} {
		clock.Advance(step.after)
		got, err := c.Admit(ctx, "EV_window", "room:RM_w", step.owner)
		if !errors.Is(err, step.want) {
			t.Fatalf("after %v more, owner %s: err %v, want %v", step.after, step.owner, err, step.want)
		}
		if err == nil && (got == first) != step.same {
			t.Fatalf("after %v more, owner %s: ticket %v, first was %v", step.after, step.owner, got, first)
		}
	}
}

// BenchmarkInProcessAdmitMemory is the heap an admitted event keeps for the
// admission window after it is done: a single process holds this for every
// event of the last ten minutes (300 000 of them at 500 events/s). The ids
// and owners are made as the pipeline makes them, one string each, and
// dropped once admitted, so what stays is what the coordinator keeps.
func BenchmarkInProcessAdmitMemory(b *testing.B) {
	const n = 100_000
	ctx := context.Background()
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		c := coord.NewInProcess(nil)
		for i := range n {
			id := fmt.Sprintf("EV_%022d", i)
			key := fmt.Sprintf("room:RM_%d", i%100)
			tk, err := c.Admit(ctx, id, key, fmt.Sprintf("local/%d", i))
			if err != nil {
				b.Fatal(err)
			}
			tu, err := c.Turn(ctx, key, tk)
			if err != nil {
				b.Fatal(err)
			}
			if err := tu.Done(ctx); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "heap-B/event")
		runtime.KeepAlive(c)
	}
}
