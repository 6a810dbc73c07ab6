// Package coordtest is the contract every coord.Coordinator backend must
// pass, so the in-process backend and the Consul backend give the Meet logic
// the same locks and events.
package coordtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lkedge/lkedge/host/coord"
)

// Options adapts the suite to a backend's limits.
type Options struct {
	// SkipExpiry skips the subtest that waits for a lock's TTL to lapse on
	// the real clock. Backends whose minimum TTL makes that slow (Consul
	// sessions: 10s) set it and test expiry on their own terms.
	SkipExpiry bool
}

const (
	// lockTTL is long enough for every backend (Consul's minimum is 10s)
	// and for any subtest to finish before it lapses.
	lockTTL = 30 * time.Second
	// expiryTTL is the real-clock TTL of the expiry subtest.
	expiryTTL = time.Second
	// waitFor bounds every wait for something that should happen, so a
	// broken backend fails instead of hanging.
	waitFor = 5 * time.Second
)

// Run runs the contract suite. newCoord is called once per subtest; it may
// return coordinators sharing one cluster, since every subtest uses names
// under a fresh random prefix, and should register cleanup with t.Cleanup.
func Run(t *testing.T, newCoord func(t *testing.T) coord.Coordinator, opts Options) {
	t.Helper()
	tests := []struct {
		name string
		skip bool
		fn   func(t *testing.T, c coord.Coordinator, prefix string)
	}{
		{"LockLifecycle", false, testLockLifecycle},
		{"LocksPrefix", false, testLocksPrefix},
		{"LockExpiry", opts.SkipExpiry, testLockExpiry},
		{"ConcurrentAcquire", false, testConcurrentAcquire},
		{"PublishTwoSubscribers", false, testPublishTwoSubscribers},
		{"SubscribeCancelCloses", false, testSubscribeCancelCloses},
		{"PublishNoSubscribers", false, testPublishNoSubscribers},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.skip {
				t.Skip("skipped by Options")
			}
			c := newCoord(t)
			prefix := uniquePrefix()
			t.Cleanup(func() { releaseAll(c, prefix) })
			tc.fn(t, c, prefix)
		})
	}
}

func uniquePrefix() string {
	var b [6]byte
	rand.Read(b[:])
	return "coordtest-" + hex.EncodeToString(b[:]) + "/"
}

// releaseAll frees what a subtest left behind, so a shared cluster stays clean.
func releaseAll(c coord.Coordinator, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	locks, err := c.Locks(ctx, prefix)
	if err != nil {
		return
	}
	for _, l := range locks {
		c.Release(ctx, l.Name)
	}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func acquire(t *testing.T, c coord.Coordinator, name string, ttl time.Duration) bool {
	t.Helper()
	ok, err := c.Acquire(ctx(t), name, ttl)
	if err != nil {
		t.Fatalf("Acquire(%q): %v", name, err)
	}
	return ok
}

func release(t *testing.T, c coord.Coordinator, name string) bool {
	t.Helper()
	ok, err := c.Release(ctx(t), name)
	if err != nil {
		t.Fatalf("Release(%q): %v", name, err)
	}
	return ok
}

func lockNames(t *testing.T, c coord.Coordinator, prefix string) []string {
	t.Helper()
	locks, err := c.Locks(ctx(t), prefix)
	if err != nil {
		t.Fatalf("Locks(%q): %v", prefix, err)
	}
	var names []string
	for _, l := range locks {
		names = append(names, l.Name)
	}
	return names
}

func testLockLifecycle(t *testing.T, c coord.Coordinator, prefix string) {
	name := prefix + "recording/room-1"
	steps := []struct {
		op   string
		want bool
	}{
		{"acquire", true},
		{"acquire", false}, // held
		{"release", true},
		{"release", false}, // no longer held
		{"acquire", true},  // free again after release
		{"release", true},
	}
	for i, s := range steps {
		var got bool
		if s.op == "acquire" {
			got = acquire(t, c, name, lockTTL)
		} else {
			got = release(t, c, name)
		}
		if got != s.want {
			t.Fatalf("step %d: %s = %v, want %v", i, s.op, got, s.want)
		}
	}
}

func testLocksPrefix(t *testing.T, c coord.Coordinator, prefix string) {
	for _, n := range []string{"rec/b", "rec/a", "recx/c", "other/d"} {
		if !acquire(t, c, prefix+n, lockTTL) {
			t.Fatalf("Acquire(%q) = false on a fresh lock", prefix+n)
		}
	}
	tests := []struct {
		prefix string
		want   []string
	}{
		{"rec/", []string{"rec/a", "rec/b"}},
		{"rec", []string{"rec/a", "rec/b", "recx/c"}},
		{"", []string{"other/d", "rec/a", "rec/b", "recx/c"}},
		{"none/", nil},
	}
	for _, tc := range tests {
		var want []string
		for _, n := range tc.want {
			want = append(want, prefix+n)
		}
		if got := lockNames(t, c, prefix+tc.prefix); !slices.Equal(got, want) {
			t.Errorf("Locks(%q) = %q, want %q", prefix+tc.prefix, got, want)
		}
	}

	locks, err := c.Locks(ctx(t), prefix+"rec/a")
	if err != nil || len(locks) != 1 {
		t.Fatalf("Locks(rec/a) = %v, %v", locks, err)
	}
	if l := locks[0]; l.AcquiredAt.IsZero() || !l.ExpiresAt.After(l.AcquiredAt) {
		t.Errorf("lock times: acquired %v, expires %v; want expiry after acquisition", l.AcquiredAt, l.ExpiresAt)
	}

	release(t, c, prefix+"rec/a")
	if got, want := lockNames(t, c, prefix+"rec/"), []string{prefix + "rec/b"}; !slices.Equal(got, want) {
		t.Errorf("Locks after release = %q, want %q", got, want)
	}
}

func testLockExpiry(t *testing.T, c coord.Coordinator, prefix string) {
	name := prefix + "short"
	if !acquire(t, c, name, expiryTTL) {
		t.Fatal("Acquire on a fresh lock = false")
	}
	if acquire(t, c, name, expiryTTL) {
		t.Fatal("Acquire of a held lock = true")
	}
	time.Sleep(expiryTTL)
	// Backends may expire lazily or a little late; poll.
	deadline := time.Now().Add(waitFor)
	for !acquire(t, c, name, lockTTL) {
		if time.Now().After(deadline) {
			t.Fatalf("lock still held %v after its %v TTL", waitFor, expiryTTL)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The reacquired lock is a fresh one with the new TTL.
	locks, err := c.Locks(ctx(t), name)
	if err != nil || len(locks) != 1 {
		t.Fatalf("Locks after reacquire = %v, %v", locks, err)
	}
	if d := time.Until(locks[0].ExpiresAt); d < lockTTL/2 {
		t.Errorf("reacquired lock expires in %v, want about %v", d, lockTTL)
	}
}

func testConcurrentAcquire(t *testing.T, c coord.Coordinator, prefix string) {
	const n = 16
	name := prefix + "contended"
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		wins  atomic.Int32
	)
	for range n {
		wg.Go(func() {
			<-start
			ok, err := c.Acquire(ctx(t), name, lockTTL)
			if err != nil {
				t.Errorf("Acquire: %v", err)
			}
			if ok {
				wins.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	if got := wins.Load(); got != 1 {
		t.Errorf("%d of %d concurrent Acquire calls won, want exactly 1", got, n)
	}
}

func subscribe(t *testing.T, c coord.Coordinator, ctx context.Context, typ string) <-chan coord.Event {
	t.Helper()
	ch, err := c.Subscribe(ctx, typ)
	if err != nil {
		t.Fatalf("Subscribe(%q): %v", typ, err)
	}
	return ch
}

func receive(t *testing.T, ch <-chan coord.Event) coord.Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("subscription closed before the event arrived")
		}
		return ev
	case <-time.After(waitFor):
		t.Fatalf("no event within %v", waitFor)
	}
	return coord.Event{}
}

func testPublishTwoSubscribers(t *testing.T, c coord.Coordinator, prefix string) {
	typ := prefix + "recording_active"
	other := prefix + "other"
	sctx := ctx(t)
	subs := []<-chan coord.Event{subscribe(t, c, sctx, typ), subscribe(t, c, sctx, typ)}
	otherCh := subscribe(t, c, sctx, other)

	payload := []byte(`{"roomId":"room-1"}`)
	if err := c.Publish(ctx(t), coord.Event{Type: typ, Payload: payload}); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	for i, ch := range subs {
		ev := receive(t, ch)
		if ev.Type != typ || string(ev.Payload) != string(payload) {
			t.Errorf("subscriber %d got %q %q, want %q %q", i, ev.Type, ev.Payload, typ, payload)
		}
	}
	// Events go only to subscribers of their type.
	select {
	case ev := <-otherCh:
		t.Errorf("subscriber of %q got %+v", other, ev)
	case <-time.After(100 * time.Millisecond):
	}
}

func testSubscribeCancelCloses(t *testing.T, c coord.Coordinator, prefix string) {
	typ := prefix + "evt"
	sctx, cancel := context.WithCancel(ctx(t))
	ch := subscribe(t, c, sctx, typ)
	cancel()
	timeout := time.After(waitFor)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				// Publishing to a type whose only subscriber left is fine.
				if err := c.Publish(ctx(t), coord.Event{Type: typ}); err != nil {
					t.Errorf("Publish after unsubscribe: %v", err)
				}
				return
			}
		case <-timeout:
			t.Fatalf("channel not closed %v after its context was canceled", waitFor)
		}
	}
}

func testPublishNoSubscribers(t *testing.T, c coord.Coordinator, prefix string) {
	tests := []coord.Event{
		{Type: prefix + "nobody", Payload: []byte(`{}`)},
		{Type: prefix + "nobody-nil-payload"},
	}
	for _, ev := range tests {
		if err := c.Publish(ctx(t), ev); err != nil {
			t.Errorf("Publish(%q) with no subscribers: %v", ev.Type, err)
		}
	}
}
