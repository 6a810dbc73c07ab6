package consulcoord

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
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
			"DeadReplicaEnded":             testDeadReplicaEnded,
			"ConsulOutageEndsNobody":       testConsulOutageEndsNobody,
			"RestartEndsPredecessor":       testRestartEndsPredecessor,
			"LostReplicaGivenUp":           testLostReplicaGivenUp,
			"RenewalHangsFenceOnTime":      testRenewalHangsFenceOnTime,
			"Prune":                        testPrune,
			"TurnKnownAtAdmission":         testTurnKnownAtAdmission,
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

// sid is the replica session a holds now ("" if none).
func sid(c *Coordinator) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lease == nil {
		return ""
	}
	return c.lease.sid
}

// process admits, waits for its turn and finishes one event.
func process(t *testing.T, c *Coordinator, id, key, owner string) {
	t.Helper()
	ctx := context.Background()
	tk, err := c.Admit(ctx, id, key, owner)
	if err != nil {
		t.Fatal(err)
	}
	tu, err := c.Turn(ctx, key, tk)
	if err != nil {
		t.Fatal(err)
	}
	if err := tu.Done(ctx); err != nil {
		t.Fatal(err)
	}
}

// testSessionInvalidated: the replica session is destroyed behind the
// coordinator's back while it works on a room (an operator, a partition).
// Its turn's context ends within about a second, before another replica
// may start on the room (FenceDelay after the membership went), and the
// next admission makes a new session; admissions made before still hold.
func testSessionInvalidated(t *testing.T, agent *testserver.Consul) {
	a, b := newCoord(t, agent.Addr, nil), newCoord(t, agent.Addr, nil)
	ctx := context.Background()
	tk1, err := a.Admit(ctx, "EV_s1", "room:s", "a/1")
	if err != nil {
		t.Fatal(err)
	}
	tu1, err := a.Turn(ctx, "room:s", tk1)
	if err != nil {
		t.Fatal(err)
	}
	tk2, err := b.Admit(ctx, "EV_s2", "room:s", "b/1")
	if err != nil {
		t.Fatal(err)
	}
	bTurn := make(chan time.Time, 1)
	go func() {
		tu, err := b.Turn(ctx, "room:s", tk2)
		if err != nil {
			t.Error(err)
			return
		}
		bTurn <- time.Now()
		_ = tu.Done(ctx)
	}()
	if _, err := a.c.Session().Destroy(sid(a), nil); err != nil {
		t.Fatal(err)
	}
	destroyed := time.Now()
	var fenced time.Time
	select {
	case <-tu1.Context().Done():
		fenced = time.Now()
	case <-time.After(3 * time.Second):
		t.Fatal("a's turn went on for 3s after its session was destroyed")
	}
	var started time.Time
	select {
	case started = <-bTurn:
	case <-time.After(10 * time.Second):
		t.Fatal("b never got its turn after a's session was destroyed")
	}
	if !fenced.Before(started) {
		t.Fatalf("b started on the room %s after the session loss, before a stopped (%s)", started.Sub(destroyed), fenced.Sub(destroyed))
	}
	t.Logf("a stopped %s after its session was destroyed; b started %s after", fenced.Sub(destroyed).Round(time.Millisecond), started.Sub(destroyed).Round(time.Millisecond))
	// a comes back: its old ticket is late, and its next admission works.
	tu1again, err := a.Turn(ctx, "room:s", tk1)
	if err != nil {
		t.Fatal(err)
	}
	if !tu1again.Late() {
		t.Fatal("a's given-up ticket is not late")
	}
	process(t, a, "EV_s3", "room:s", "a/3")
	if _, err := b.Admit(ctx, "EV_s1", "room:x", "b/9"); !errors.Is(err, coord.ErrDuplicate) {
		t.Fatalf("an admission made before the session was lost must still hold: %v", err)
	}
}

// testRestartEndsPredecessor: a replica that starts again under the same
// id ends the session its dead predecessor left, at once: its membership,
// and what depends on it, does not wait for the TTL.
func testRestartEndsPredecessor(t *testing.T, agent *testserver.Consul) {
	first := newCoord(t, agent.Addr, func(o *Options) { o.Replica = "same-id" })
	old := sid(first)
	first.halt() // dies: no renewal, no Close
	start := time.Now()
	second := newCoord(t, agent.Addr, func(o *Options) { o.Replica = "same-id" })
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Fatalf("the successor took %s to start", elapsed)
	}
	info, _, err := second.c.Session().Info(old, nil)
	if err != nil {
		t.Fatal(err)
	}
	if info != nil {
		t.Fatal("the predecessor's session is still alive after the successor started")
	}
	pair, _, err := second.c.KV().Get(second.key("members", "same-id"), nil)
	if err != nil || pair == nil || pair.Session != sid(second) {
		t.Fatalf("membership after restart = %+v, %v; want held by the new session", pair, err)
	}
}

// testLostReplicaGivenUp: a replica dies holding a room's earlier event; the
// room's next event on another replica waits while the dead one is still a
// member, then goes on FenceDelay after its membership lapsed.
func testLostReplicaGivenUp(t *testing.T, agent *testserver.Consul) {
	a, b := newCoord(t, agent.Addr, nil), newCoord(t, agent.Addr, nil)
	ctx := context.Background()
	if _, err := a.Admit(ctx, "EV_l1", "room:l", "a/1"); err != nil {
		t.Fatal(err)
	}
	tk2, err := b.Admit(ctx, "EV_l2", "room:l", "b/1")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan coord.Turn, 1)
	go func() {
		tu, err := b.Turn(ctx, "room:l", tk2)
		if err != nil {
			t.Error(err)
		}
		got <- tu
	}()
	select {
	case <-got:
		t.Fatal("b's later event went first while a, holding the earlier one, lived")
	case <-time.After(time.Second):
	}
	// a dies; its session lapses (here: destroyed, as the other replicas or
	// Consul do). The membership goes after the call is sent.
	a.halt()
	lapsed := time.Now()
	if _, err := b.c.Session().Destroy(sid(a), nil); err != nil {
		t.Fatal(err)
	}
	select {
	case tu := <-got:
		waited := time.Since(lapsed)
		if waited < b.opts.FenceDelay {
			t.Fatalf("b went on %s after a's session lapsed, before FenceDelay %s", waited, b.opts.FenceDelay)
		}
		if tu.Late() {
			t.Fatal("b's event is late")
		}
		_ = tu.Done(ctx)
	case <-time.After(b.opts.FenceDelay + 5*time.Second):
		t.Fatal("b still waits for a dead replica's event")
	}
}

// cutOff fails every request once cut, as when the replica's process died
// or lost its network: nothing it does reaches Consul any more.
type cutOff struct{ cut atomic.Bool }

func (c *cutOff) RoundTrip(r *http.Request) (*http.Response, error) {
	if c.cut.Load() {
		return nil, errors.New("cut off from consul")
	}
	return http.DefaultTransport.RoundTrip(r)
}

// testDeadReplicaEnded: a replica that leads and holds a room's first event
// stops reaching Consul without a word (it died, or lost its network). Its
// fence stops its own work; the other replica, hearing no heartbeat, ends
// its session and takes its leadership and its room, within the session
// TTL of the cut (Consul alone may keep the session twice the TTL), and
// only after the cut-off replica stopped.
func testDeadReplicaEnded(t *testing.T, agent *testserver.Consul) {
	link := &cutOff{}
	a := newCoord(t, agent.Addr, func(o *Options) { o.Transport = link })
	b := newCoord(t, agent.Addr, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	led := make(chan string, 2)
	go func() {
		_ = a.Lead(ctx, "collector", func(ctx context.Context) { led <- "a"; <-ctx.Done() })
	}()
	if got := <-led; got != "a" {
		t.Fatal(got)
	}
	go func() {
		_ = b.Lead(ctx, "collector", func(ctx context.Context) { led <- "b"; <-ctx.Done() })
	}()
	tk1, err := a.Admit(ctx, "EV_d1", "room:d", "a/1")
	if err != nil {
		t.Fatal(err)
	}
	tu1, err := a.Turn(ctx, "room:d", tk1)
	if err != nil {
		t.Fatal(err)
	}
	tk2, err := b.Admit(ctx, "EV_d2", "room:d", "b/1")
	if err != nil {
		t.Fatal(err)
	}
	bTurn := make(chan time.Time, 1)
	go func() {
		tu, err := b.Turn(ctx, "room:d", tk2)
		if err != nil {
			t.Error(err)
			return
		}
		bTurn <- time.Now()
		if tu.Late() {
			t.Error("b's event is late")
		}
		_ = tu.Done(ctx)
	}()
	time.Sleep(2 * renewEvery) // b has heard a's heartbeat
	old := sid(a)
	link.cut.Store(true)
	cut := time.Now()
	ttl := b.opts.SessionTTL
	var fenced, leads, moved time.Time
	select {
	case <-tu1.Context().Done():
		fenced = time.Now()
	case <-time.After(ttl):
		t.Fatal("a worked on for the session TTL without reaching consul")
	}
	select {
	case got := <-led:
		if got != "b" {
			t.Fatalf("%s led again", got)
		}
		leads = time.Now()
	case <-time.After(ttl - time.Since(cut)):
		t.Fatalf("b did not lead within the session TTL (%s) of the cut", ttl)
	}
	select {
	case moved = <-bTurn:
	case <-time.After(ttl - time.Since(cut)):
		t.Fatalf("b did not go on with the room within the session TTL (%s) of the cut", ttl)
	}
	if !fenced.Before(leads) || !fenced.Before(moved) {
		t.Fatalf("b took over before a stopped: a stopped %s after the cut, b led after %s and went on with the room after %s",
			fenced.Sub(cut), leads.Sub(cut), moved.Sub(cut))
	}
	if info, _, err := b.c.Session().Info(old, nil); err != nil || info != nil {
		t.Fatalf("a's session after the takeover: %+v, %v; want destroyed", info, err)
	}
	t.Logf("a stopped %s after the cut; b led after %s and went on with the room after %s (session TTL %s)",
		fenced.Sub(cut).Round(time.Millisecond), leads.Sub(cut).Round(time.Millisecond), moved.Sub(cut).Round(time.Millisecond), ttl)
}

// lockedBuffer collects the log lines of several coordinators.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// testConsulOutageEndsNobody: Consul stops for 12 s, longer than endAfter,
// then comes back. No heartbeat reached it meanwhile, yet no replica ends
// another's session: each counts silence only from when its own reads and
// heartbeats work again. Each replica makes a new session (its fence ended
// the old one during the outage) and keeps it.
func testConsulOutageEndsNobody(t *testing.T, _ *testserver.Consul) {
	agent := testserver.StartConsul(t) // its own: the other tests go on meanwhile
	var logs lockedBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var cs []*Coordinator
	for range 3 {
		c := newCoord(t, agent.Addr, func(o *Options) { o.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
		// As the service does: every replica stands for leadership, which
		// also makes a new session after the old one was lost.
		go func() { _ = c.Lead(ctx, "leader", func(ctx context.Context) { <-ctx.Done() }) }()
		cs = append(cs, c)
	}
	time.Sleep(2 * renewEvery)
	agent.Stop()
	time.Sleep(12 * time.Second)
	agent.Start()
	back := time.Now()
	sids := make([]string, len(cs))
	for i, c := range cs {
		for sids[i] = sid(c); sids[i] == ""; sids[i] = sid(c) {
			if time.Since(back) > 15*time.Second {
				t.Fatalf("replica %s has no session 15 s after consul came back", c.opts.Replica)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	time.Sleep(2 * endAfter) // an end counted from before the outage would have come by now
	for i, c := range cs {
		if now := sid(c); now != sids[i] {
			t.Errorf("replica %s lost its session %s after consul came back (now %q)", c.opts.Replica, sids[i], now)
		}
		if info, _, err := c.c.Session().Info(sids[i], nil); err != nil || info == nil {
			t.Errorf("session %s of replica %s after the outage: %+v, %v", sids[i], c.opts.Replica, info, err)
		}
	}
	if l := logs.String(); strings.Contains(l, "whose heartbeat stopped") {
		t.Errorf("a replica ended another after the outage:\n%s", l)
	}
}

// testPrune deletes old claim windows, and sequences whose pending events
// all belong to replicas that are gone; it keeps current ones.
func testPrune(t *testing.T, agent *testserver.Consul) {
	c := newCoord(t, agent.Addr, func(o *Options) { o.ClaimBucket = time.Second; o.FenceDelay = time.Second })
	dead := newCoord(t, agent.Addr, nil)
	ctx := context.Background()
	process(t, c, "EV_old", "room:p", "a/1")
	if _, err := dead.Admit(ctx, "EV_stuck", "room:stuck", "d/1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Admit(ctx, "EV_live", "room:live", "a/2"); err != nil {
		t.Fatal(err)
	}
	dead.halt()
	if _, err := c.c.Session().Destroy(sid(dead), nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Prune(ctx); err != nil { // first sighting of the dead replica
		t.Fatal(err)
	}
	time.Sleep(2100 * time.Millisecond) // two windows later, past FenceDelay
	if err := c.Prune(ctx); err != nil {
		t.Fatal(err)
	}
	keys, _, err := c.c.KV().Keys(c.key("claims")+"/", "", nil)
	if err != nil || len(keys) != 0 {
		t.Fatalf("claims after prune: %v, %v", keys, err)
	}
	seqs, _, err := c.c.KV().Keys(c.key("seq")+"/", "", nil)
	if err != nil || !slices.Equal(seqs, []string{c.seqKey("room:live")}) {
		t.Fatalf("sequences after prune: %v, %v; want only the live replica's", seqs, err)
	}
}

// hangingRenewals holds every session renewal until the test ends, as a
// Consul that takes connections but does not answer (stopping, restarting).
type hangingRenewals struct {
	hang    atomic.Bool
	release chan struct{}
}

func (h *hangingRenewals) RoundTrip(r *http.Request) (*http.Response, error) {
	if h.hang.Load() && strings.Contains(r.URL.Path, "/session/renew/") {
		select {
		case <-h.release:
		case <-r.Context().Done():
		}
		return nil, errors.New("consul did not answer")
	}
	return http.DefaultTransport.RoundTrip(r)
}

// testRenewalHangsFenceOnTime: renewals that hang instead of failing fast
// do not delay the fence: the replica stops its work fenceAfter after its
// last successful round, before the other replicas may end its session and
// take its rooms.
func testRenewalHangsFenceOnTime(t *testing.T, agent *testserver.Consul) {
	h := &hangingRenewals{release: make(chan struct{})}
	defer close(h.release)
	a := newCoord(t, agent.Addr, func(o *Options) { o.Transport = h })
	ctx := context.Background()
	tk, err := a.Admit(ctx, "EV_h1", "room:h", "a/1")
	if err != nil {
		t.Fatal(err)
	}
	tu, err := a.Turn(ctx, "room:h", tk)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // at least one renewal went through
	h.hang.Store(true)
	hung := time.Now()
	select {
	case <-tu.Context().Done():
		// The last renewal was sent at most renewEvery before the hang.
		if took := time.Since(hung); took > fenceAfter+500*time.Millisecond {
			t.Fatalf("fenced %s after renewals began to hang, later than %s", took, fenceAfter)
		}
	case <-time.After(a.opts.SessionTTL):
		t.Fatalf("not fenced within the session TTL (%s) of hanging renewals", a.opts.SessionTTL)
	}
}

// seqReads counts the reads of sequence keys, which a turn makes unless its
// admission already showed the ticket next.
type seqReads struct{ n atomic.Int64 }

func (s *seqReads) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/seq/") {
		s.n.Add(1)
	}
	return http.DefaultTransport.RoundTrip(r)
}

// testTurnKnownAtAdmission: a ticket issued when none of its key was
// pending is next, and its turn reads nothing while the session it was
// issued under lives. A later ticket of the key, and a first ticket whose
// session was lost before its turn (its ticket may have been given up),
// read the sequence; the latter comes back late once given up.
func testTurnKnownAtAdmission(t *testing.T, agent *testserver.Consul) {
	reads := &seqReads{}
	a := newCoord(t, agent.Addr, func(o *Options) { o.Transport = reads })
	b := newCoord(t, agent.Addr, nil)
	ctx := context.Background()
	turn := func(c *Coordinator, key string, tk coord.Ticket) (coord.Turn, int64) {
		t.Helper()
		before := reads.n.Load()
		tu, err := c.Turn(ctx, key, tk)
		if err != nil {
			t.Fatal(err)
		}
		return tu, reads.n.Load() - before
	}

	tk1, err := a.Admit(ctx, "EV_k1", "room:k", "a/1")
	if err != nil {
		t.Fatal(err)
	}
	tk2, err := a.Admit(ctx, "EV_k2", "room:k", "a/2")
	if err != nil {
		t.Fatal(err)
	}
	tu1, n := turn(a, "room:k", tk1)
	if n != 0 || tu1.Late() {
		t.Fatalf("first ticket: %d reads, late %v; want 0 reads, on time", n, tu1.Late())
	}
	finish(t, tu1)
	tu2, n := turn(a, "room:k", tk2)
	if n == 0 || tu2.Late() {
		t.Fatalf("second ticket: %d reads, late %v; want a read, on time", n, tu2.Late())
	}
	finish(t, tu2)

	// The session is lost after the admission: b's later ticket gives the
	// first up, and a's turn must read that rather than trust its admission.
	tk3, err := a.Admit(ctx, "EV_k3", "room:k", "a/3")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.c.Session().Destroy(sid(a), nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for sid(a) != "" {
		if time.Now().After(deadline) {
			t.Fatal("a did not notice its session was destroyed")
		}
		time.Sleep(50 * time.Millisecond)
	}
	tk4, err := b.Admit(ctx, "EV_k4", "room:k", "b/4")
	if err != nil {
		t.Fatal(err)
	}
	finish(t, mustTurnWithin(t, b, "room:k", tk4, b.opts.FenceDelay+5*time.Second))
	tu3, n := turn(a, "room:k", tk3)
	if n == 0 || !tu3.Late() {
		t.Fatalf("ticket given up after its session was lost: %d reads, late %v; want a read, late", n, tu3.Late())
	}
	finish(t, tu3)
}

func mustTurnWithin(t *testing.T, c *Coordinator, key string, tk coord.Ticket, d time.Duration) coord.Turn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	tu, err := c.Turn(ctx, key, tk)
	if err != nil {
		t.Fatalf("turn of %s %v within %s: %v", key, tk, d, err)
	}
	return tu
}

func finish(t *testing.T, tu coord.Turn) {
	t.Helper()
	if err := tu.Done(context.Background()); err != nil {
		t.Fatal(err)
	}
}
