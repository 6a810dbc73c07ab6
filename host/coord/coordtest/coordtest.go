// Package coordtest is the contract every coord.Coordinator backend must
// pass, so the in-process backend and the Consul backend give the Meet logic
// the same locks and events.
package coordtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"slices"
	"strconv"
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
	// Replica subtests take two coordinators from newCoord: they must share
	// one backend (one cluster, or one in-process instance).
	replicaTests := []struct {
		name string
		fn   func(t *testing.T, a, b coord.Coordinator, prefix string)
	}{
		{"AdmitOnceAcrossReplicas", testAdmitOnce},
		{"AdmitRaceOneWinner", testAdmitRace},
		{"TurnsInTicketOrder", testTurnsInTicketOrder},
		{"AdmitDuringTurn", testAdmitDuringTurn},
		{"LeadOneAtATime", testLeadOneAtATime},
	}
	for _, tc := range replicaTests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := newCoord(t), newCoord(t)
			tc.fn(t, a, b, uniquePrefix())
		})
	}
	t.Run("Ping", func(t *testing.T) {
		if err := newCoord(t).Ping(ctx(t)); err != nil {
			t.Fatal(err)
		}
	})
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

func admit(t *testing.T, c coord.Coordinator, id, key, owner string) (coord.Ticket, error) {
	t.Helper()
	cctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	return c.Admit(cctx, id, key, owner)
}

func mustAdmit(t *testing.T, c coord.Coordinator, id, key, owner string) coord.Ticket {
	t.Helper()
	tk, err := admit(t, c, id, key, owner)
	if err != nil {
		t.Fatalf("admit %s: %v", id, err)
	}
	return tk
}

func mustTurn(t *testing.T, c coord.Coordinator, key string, tk coord.Ticket) coord.Turn {
	t.Helper()
	cctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	tu, err := c.Turn(cctx, key, tk)
	if err != nil {
		t.Fatalf("turn %v on %s: %v", tk, key, err)
	}
	return tu
}

func done(t *testing.T, tu coord.Turn) {
	t.Helper()
	cctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := tu.Done(cctx); err != nil {
		t.Fatalf("done: %v", err)
	}
}

// testAdmitOnce: an event admitted on one replica is a duplicate on
// another, the same owner (a retry, a replay) gets its ticket back, and a
// key's tickets follow one another across replicas.
func testAdmitOnce(t *testing.T, a, b coord.Coordinator, prefix string) {
	id, key := prefix+"EV_1", prefix+"room:r1"
	first := mustAdmit(t, a, id, key, "a/1")
	if _, err := admit(t, b, id, prefix+"room:r2", "b/9"); !errors.Is(err, coord.ErrDuplicate) {
		t.Fatalf("admit by another owner = %v, want ErrDuplicate", err)
	}
	if again := mustAdmit(t, a, id, key, "a/1"); again != first {
		t.Fatalf("the same owner admitting again got %v, want its first ticket %v", again, first)
	}
	next := mustAdmit(t, b, prefix+"EV_2", key, "b/10")
	if next.Epoch != first.Epoch || next.N != first.N+1 {
		t.Fatalf("the key's next ticket = %v after %v, want the next number in the same epoch", next, first)
	}
	done(t, mustTurn(t, a, key, first))
	done(t, mustTurn(t, b, key, next))
}

// testAdmitRace: many admissions of one event at once, from both replicas
// and different owners: exactly one wins.
func testAdmitRace(t *testing.T, a, b coord.Coordinator, prefix string) {
	var wins, dups atomic.Int32
	var wg sync.WaitGroup
	for i := range 16 {
		c := a
		if i%2 == 1 {
			c = b
		}
		wg.Go(func() {
			_, err := admit(t, c, prefix+"EV_race", prefix+"room:race-"+strconv.Itoa(i), "owner/"+strconv.Itoa(i))
			switch {
			case err == nil:
				wins.Add(1)
			case errors.Is(err, coord.ErrDuplicate):
				dups.Add(1)
			default:
				t.Errorf("admit: %v", err)
			}
		})
	}
	wg.Wait()
	if wins.Load() != 1 || dups.Load() != 15 {
		t.Fatalf("wins %d, duplicates %d; want 1 and 15", wins.Load(), dups.Load())
	}
}

// testTurnsInTicketOrder: a key's events admitted alternately on two
// replicas get their turns in admission order, whichever replica asks
// first, and one key's wait does not hold up another key.
func testTurnsInTicketOrder(t *testing.T, a, b coord.Coordinator, prefix string) {
	key, other := prefix+"room:ordered", prefix+"room:other"
	reps := []coord.Coordinator{a, b, a, b, a}
	tickets := make([]coord.Ticket, len(reps))
	for i, c := range reps {
		tickets[i] = mustAdmit(t, c, prefix+"EV_o"+strconv.Itoa(i), key, "r/"+strconv.Itoa(i))
	}
	var mu sync.Mutex
	var order []int
	var wg sync.WaitGroup
	// Ask in reverse order: the later tickets must wait for the earlier.
	for i := len(reps) - 1; i >= 0; i-- {
		wg.Go(func() {
			tu := mustTurn(t, reps[i], key, tickets[i])
			if tu.Late() {
				t.Errorf("ticket %d is late", i)
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			time.Sleep(20 * time.Millisecond)
			done(t, tu)
		})
		time.Sleep(30 * time.Millisecond)
	}
	// Another key goes on while the first key's turns wait.
	tk := mustAdmit(t, b, prefix+"EV_x", other, "b/x")
	done(t, mustTurn(t, b, other, tk))
	wg.Wait()
	if !slices.Equal(order, []int{0, 1, 2, 3, 4}) {
		t.Fatalf("turns granted in order %v, want admission order", order)
	}
	// Everything done: a ticket of the finished sequence is late, and the
	// key's next event starts afresh.
	if tu := mustTurn(t, a, key, tickets[2]); !tu.Late() {
		t.Fatal("a ticket of a finished sequence is not late")
	}
	fresh := mustAdmit(t, b, prefix+"EV_fresh", key, "b/f")
	tu := mustTurn(t, b, key, fresh)
	if tu.Late() {
		t.Fatal("the first ticket of a new sequence is late")
	}
	done(t, tu)
}

// testAdmitDuringTurn: events of the key admitted while a turn runs, on
// this replica and another, change the sequence under it; its done still
// records, and their turns follow in order.
func testAdmitDuringTurn(t *testing.T, a, b coord.Coordinator, prefix string) {
	key := prefix + "room:busy"
	first := mustAdmit(t, a, prefix+"EV_b0", key, "a/0")
	tu := mustTurn(t, a, key, first)
	second := mustAdmit(t, b, prefix+"EV_b1", key, "b/1")
	third := mustAdmit(t, a, prefix+"EV_b2", key, "a/2")
	done(t, tu)
	for _, step := range []struct {
		c  coord.Coordinator
		tk coord.Ticket
	}{{b, second}, {a, third}} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		next, err := step.c.Turn(ctx, key, step.tk)
		cancel()
		if err != nil {
			t.Fatalf("turn of ticket %d after the first was done: %v", step.tk.N, err)
		}
		if next.Late() {
			t.Fatalf("ticket %d is late", step.tk.N)
		}
		done(t, next)
	}
}

// testLeadOneAtATime: two replicas compete; one leads at a time, and when
// the leader steps down the other takes over.
func testLeadOneAtATime(t *testing.T, a, b coord.Coordinator, prefix string) {
	role := prefix + "collector"
	var leading atomic.Int32
	led := make(chan string, 4)
	run := func(name string) func(ctx context.Context) {
		return func(ctx context.Context) {
			if leading.Add(1) != 1 {
				t.Errorf("%s leads while another replica leads", name)
			}
			led <- name
			<-ctx.Done()
			leading.Add(-1)
		}
	}
	actx, stopA := context.WithCancel(context.Background())
	bctx, stopB := context.WithCancel(context.Background())
	defer stopB()
	var wg sync.WaitGroup
	wg.Go(func() { _ = a.Lead(actx, role, run("a")) })
	first := <-led
	wg.Go(func() { _ = b.Lead(bctx, role, run("b")) })
	select {
	case other := <-led:
		t.Fatalf("%s became leader while %s led", other, first)
	case <-time.After(300 * time.Millisecond):
	}
	if first == "a" {
		stopA()
	} else {
		stopB()
	}
	select {
	case next := <-led:
		if next == first {
			t.Fatalf("%s led again after stepping down", next)
		}
	case <-time.After(waitFor):
		t.Fatal("nobody took over after the leader stepped down")
	}
	stopA()
	stopB()
	wg.Wait()
}
