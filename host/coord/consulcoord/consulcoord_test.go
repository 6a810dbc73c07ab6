package consulcoord

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/url"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lkedge/lkedge/host/coord"
	"github.com/lkedge/lkedge/host/coord/coordtest"
	"github.com/lkedge/lkedge/host/internal/testserver"
)

var replicas atomic.Int32

// newCoord is one replica's coordinator on the agent at addr.
func newCoord(t testing.TB, addr string, mutate func(*Options)) *Coordinator {
	t.Helper()
	// Each test has a prefix of its own, so tests sharing the agent cannot
	// see each other's keys; the replicas of one test share it.
	opts := Options{
		Address: addr, Prefix: "lkedge-test/" + url.PathEscape(t.Name()) + "/",
		Replica: "replica-" + strconv.Itoa(int(replicas.Add(1))), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if mutate != nil {
		mutate(&opts)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestConsul runs every test against one real agent, started once; the
// slow ones (waiting out session TTLs) run in parallel.
func TestConsul(t *testing.T) {
	agent := testserver.StartConsul(t)
	t.Run("Contract", func(t *testing.T) { testContract(t, agent) })
	t.Run("Group", func(t *testing.T) {
		for name, fn := range map[string]func(*testing.T, *testserver.Consul){
			"LockReleasedByAnotherReplica": testLockReleasedByAnotherReplica,
			"LockExpiry":                   testLockExpiry,
			"SessionInvalidated":           testSessionInvalidated,
			"LeaderCrash":                  testLeaderCrash,
			"Prune":                        testPrune,
		} {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				fn(t, agent)
			})
		}
	})
}

// testContract runs the coordination contract the in-process backend also
// passes against a real Consul agent.
func testContract(t *testing.T, agent *testserver.Consul) {
	coordtest.Run(t, func(t *testing.T) coord.Coordinator {
		return newCoord(t, agent.Addr, nil)
	}, coordtest.Options{SkipExpiry: true}) // Consul's shortest TTL is 10 s: see testLockExpiry
}

func TestWrongAddress(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := New(ctx, Options{Address: "127.0.0.1:" + strconv.Itoa(testserver.FreePort(t)), Replica: "x"}); err == nil {
		t.Fatal("New must fail when no agent answers")
	}
}

// testLockReleasedByAnotherReplica: the recording lock taken by one
// process is released by another (the reference's HA rule), and a lock
// nobody releases lapses with its session.
func testLockReleasedByAnotherReplica(t *testing.T, agent *testserver.Consul) {
	a, b := newCoord(t, agent.Addr, nil), newCoord(t, agent.Addr, nil)
	ctx := context.Background()
	if ok, err := a.Acquire(ctx, "recording_active_r1", 6*time.Hour); err != nil || !ok {
		t.Fatalf("acquire: %v %v", ok, err)
	}
	if ok, _ := b.Acquire(ctx, "recording_active_r1", 6*time.Hour); ok {
		t.Fatal("a held lock was acquired again")
	}
	locks, err := b.Locks(ctx, "recording_active_")
	if err != nil || len(locks) != 1 || locks[0].Name != "recording_active_r1" || locks[0].ExpiresAt.Sub(locks[0].AcquiredAt) != 6*time.Hour {
		t.Fatalf("locks seen by the other replica = %+v, %v", locks, err)
	}
	if ok, err := b.Release(ctx, "recording_active_r1"); err != nil || !ok {
		t.Fatalf("release by the other replica: %v %v", ok, err)
	}
	if ok, err := a.Acquire(ctx, "recording_active_r1", 6*time.Hour); err != nil || !ok {
		t.Fatalf("acquire after release: %v %v", ok, err)
	}
}

func testLockExpiry(t *testing.T, agent *testserver.Consul) {
	c := newCoord(t, agent.Addr, nil)
	ctx := context.Background()
	if ok, err := c.Acquire(ctx, "short", 10*time.Second); err != nil || !ok {
		t.Fatalf("acquire: %v %v", ok, err)
	}
	deadline := time.Now().Add(30 * time.Second) // Consul may keep a session up to twice its TTL
	for {
		if ok, err := c.Acquire(ctx, "short", 10*time.Second); err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the lock did not lapse with its session")
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// testSessionInvalidated: the replica session is destroyed behind the
// coordinator's back (an operator, a network partition): the next claim
// makes a new session and works; claims already made stay exclusive.
func testSessionInvalidated(t *testing.T, agent *testserver.Consul) {
	a := newCoord(t, agent.Addr, nil)
	ctx := context.Background()
	cl, err := a.Claim(ctx, "EV_s1", "room:s", "a/1")
	if err != nil {
		t.Fatal(err)
	}
	cl.End()
	a.mu.Lock()
	sid := a.sid
	a.mu.Unlock()
	if _, err := a.c.Session().Destroy(sid, nil); err != nil {
		t.Fatal(err)
	}
	cl, err = a.Claim(ctx, "EV_s2", "room:s", "a/2")
	if err != nil {
		t.Fatalf("claim after the session was destroyed: %v", err)
	}
	cl.End()
	b := newCoord(t, agent.Addr, nil)
	if _, err := b.Claim(ctx, "EV_s1", "room:s", "b/1"); !errors.Is(err, coord.ErrDuplicate) {
		t.Fatalf("a claim made before the session was lost must still hold: %v", err)
	}
}

// testLeaderCrash: the leader dies without a word (no Close, no release);
// another replica takes over once the dead one's session lapses.
func testLeaderCrash(t *testing.T, agent *testserver.Consul) {
	a, b := newCoord(t, agent.Addr, nil), newCoord(t, agent.Addr, nil)
	led := make(chan string, 2)
	actx, crash := context.WithCancel(context.Background())
	go func() {
		_ = a.Lead(actx, "collector", func(ctx context.Context) { led <- "a"; <-ctx.Done() })
	}()
	if got := <-led; got != "a" {
		t.Fatal(got)
	}
	bctx, stopB := context.WithCancel(context.Background())
	defer stopB()
	go func() {
		_ = b.Lead(bctx, "collector", func(ctx context.Context) { led <- "b"; <-ctx.Done() })
	}()
	// Crash a: its session is no longer renewed and its key never released.
	a.stop <- struct{}{}
	start := time.Now()
	select {
	case got := <-led:
		if got != "b" {
			t.Fatalf("%s led again", got)
		}
		t.Logf("takeover after %s (session TTL %s)", time.Since(start).Round(time.Second), a.opts.SessionTTL)
	case <-time.After(3 * a.opts.SessionTTL):
		t.Fatal("no takeover within the session TTL")
	}
	crash()
}

// testPrune deletes old claim windows and old events, and keeps current ones.
func testPrune(t *testing.T, agent *testserver.Consul) {
	c := newCoord(t, agent.Addr, func(o *Options) { o.ClaimBucket = time.Second })
	ctx := context.Background()
	cl, err := c.Claim(ctx, "EV_old", "room:p", "a/1")
	if err != nil {
		t.Fatal(err)
	}
	cl.End()
	time.Sleep(2100 * time.Millisecond) // two windows later
	if err := c.Prune(ctx); err != nil {
		t.Fatal(err)
	}
	keys, _, err := c.c.KV().Keys(c.key("claims")+"/", "", nil)
	if err != nil || len(keys) != 0 {
		t.Fatalf("claims after prune: %v, %v", keys, err)
	}
}
