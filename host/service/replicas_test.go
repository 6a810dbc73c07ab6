package service

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/lkedge/lkedge/host/internal/testserver"
	"github.com/lkedge/lkedge/host/livekitapi/livekittest"
	"github.com/lkedge/lkedge/host/meet"
	"github.com/lkedge/lkedge/host/store"
)

// cluster is what several lkedge replicas share: a Consul agent, an S3
// bucket and a LiveKit API (a fake: these tests are about coordination).
type cluster struct {
	consul *testserver.Consul
	gw     *testserver.S3
	kv     *api.Client
	s3     store.Store
	lk     *livekittest.Server
	env    map[string]string
}

func newCluster(t testing.TB) *cluster {
	t.Helper()
	c := &cluster{consul: testserver.StartConsul(t), lk: livekittest.New(t, "devkey", "secret")}
	c.gw, c.s3, c.env = startS3(t)
	var err error
	if c.kv, err = api.NewClient(&api.Config{Address: c.consul.Addr}); err != nil {
		t.Fatal(err)
	}
	c.env["LKEDGE_COORDINATOR"] = "consul"
	c.env["CONSUL_HTTP_ADDR"] = c.consul.Addr
	c.env["LIVEKIT_URL"] = c.lk.URL()
	c.env["LKEDGE_LOG_LEVEL"] = "debug"
	return c
}

// replica starts one `lkedge serve` process of the cluster.
func (c *cluster) replica(t testing.TB, id string, extra ...string) *testserver.LKEdgeProcess {
	t.Helper()
	env := map[string]string{"LKEDGE_REPLICA_ID": id, "LKEDGE_DATA_DIR": t.TempDir()}
	for k, v := range c.env {
		if k != "LKEDGE_DATA_DIR" {
			env[k] = v
		}
	}
	for i := 0; i+1 < len(extra); i += 2 {
		env[extra[i]] = extra[i+1]
	}
	p := testserver.StartLKEdge(t, env)
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		t.Logf("replica %s log:\n%s", id, tail(p.Log(), 6000))
		// The whole log, for a closer look: LKEDGE_TEST_LOG_DIR=/tmp/x.
		if dir := os.Getenv("LKEDGE_TEST_LOG_DIR"); dir != "" {
			name := filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_")+"-"+id+".log")
			if err := os.WriteFile(name, []byte(p.Log()), 0o644); err != nil {
				t.Log(err)
			}
		}
	})
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestReplicasHandleOnce: every webhook is delivered to both replicas at
// once (LiveKit retrying, or two LiveKit nodes); each is handled once, and
// a recording lock taken by another process is released by a replica.
func TestReplicasHandleOnce(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	a, b := c.replica(t, "a"), c.replica(t, "b")
	const rooms = 6
	putRooms(t, c.s3, "twice", rooms)

	// The start-recording process (Meet, or `lkedge lock acquire`) holds
	// room twice-0's lock; a replica releases it on egress_ended.
	starter := newConsulCoord(t, c.consul.Addr, "starter")
	if ok, err := starter.Acquire(context.Background(), meet.RecordingLockName("twice-0"), 6*time.Hour); err != nil || !ok {
		t.Fatalf("acquire: %v %v", ok, err)
	}

	var wg sync.WaitGroup
	for r := range rooms {
		wg.Go(func() {
			for step := range recordingSteps {
				body := recordingStep("twice", r, step)
				var both sync.WaitGroup
				for _, rep := range []*testserver.LKEdgeProcess{a, b} {
					both.Go(func() {
						if code := post(t, rep.URL, body); code != http.StatusOK {
							t.Errorf("room %d step %d: status %d", r, step, code)
						}
					})
				}
				both.Wait()
			}
		})
	}
	wg.Wait()
	want := rooms * len(recordingSteps)
	c.handledOnce(t, want, 30*time.Second)
	checkRecordings(t, c.s3, "twice", rooms)
	locks, err := starter.Locks(context.Background(), meet.RecordingLockName(""))
	if err != nil || len(locks) != 0 {
		t.Errorf("recording locks after egress_ended: %+v, %v", locks, err)
	}
}

// handledOnce waits up to timeout for want events to be handled (each
// sends one data message), then checks that none is handled a second time.
func (c *cluster) handledOnce(t *testing.T, want int, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, "every event handled", func() bool { return len(c.lk.SentData()) >= want })
	time.Sleep(2 * time.Second) // a second handling would show up by now
	if n := len(c.lk.SentData()); n != want {
		t.Errorf("%d data messages for %d events: an event was handled twice", n, want)
	}
}

// plantOldLock writes a recording lock as a start-recording process would
// have, acquired long ago, so the orphan-lock collector may take it.
func (c *cluster) plantOldLock(t *testing.T, room string) {
	t.Helper()
	sid, _, err := c.kv.Session().Create(&api.SessionEntry{TTL: "6h", Behavior: api.SessionBehaviorDelete, LockDelay: time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	then := time.Now().Add(-5 * time.Minute)
	val, _ := json.Marshal(map[string]any{"acquiredAt": then.UnixMilli(), "expiresAt": then.Add(6 * time.Hour).UnixMilli(), "holder": "gone"})
	ok, _, err := c.kv.KV().Acquire(&api.KVPair{Key: "lkedge/locks/" + meet.RecordingLockName(room), Value: val, Session: sid}, nil)
	if err != nil || !ok {
		t.Fatalf("plant lock: %v %v", ok, err)
	}
}

func (c *cluster) lockHeld(room string) bool {
	pair, _, err := c.kv.KV().Get("lkedge/locks/"+meet.RecordingLockName(room), nil)
	return err != nil || (pair != nil && pair.Session != "")
}

func (c *cluster) leader() string {
	pair, _, err := c.kv.KV().Get("lkedge/leader/leader", nil)
	if err != nil || pair == nil || pair.Session == "" {
		return ""
	}
	return string(pair.Value)
}

// TestLeaderKilled: the leader runs the orphan-lock collector; killed with
// SIGKILL, it releases nothing. The other replica hears its heartbeat stop,
// ends its session and takes over within the session TTL (Consul alone
// may keep the session twice the TTL), then collects.
func TestLeaderKilled(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	a := c.replica(t, "a", "LKEDGE_LOCK_GC_INTERVAL", "1s")
	eventually(t, 10*time.Second, "a leads", func() bool { return c.leader() == "a" })
	c.replica(t, "b", "LKEDGE_LOCK_GC_INTERVAL", "1s")

	c.plantOldLock(t, "orphan-1")
	eventually(t, 10*time.Second, "the leader collects an orphan lock", func() bool { return !c.lockHeld("orphan-1") })

	a.Kill()
	killed := time.Now()
	c.plantOldLock(t, "orphan-2")
	// The allowance covers this test's polling (100 ms) and reading the
	// leader key, not the replicas.
	const ttl, allowance = 10 * time.Second, 300 * time.Millisecond
	eventually(t, ttl+allowance, "b leads within the session TTL of a's kill", func() bool { return c.leader() == "b" })
	t.Logf("b leads %s after a was killed (session TTL %s)", time.Since(killed).Round(time.Millisecond), ttl)
	eventually(t, 10*time.Second, "the new leader collects", func() bool { return !c.lockHeld("orphan-2") })
}

func readyz(url string) (int, string) {
	res, err := http.Get(url + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// TestConsulOutage: Consul stops for 30 s while webhooks arrive. Without
// Consul no replica can fix an event's place in its room's order, so each
// answers 503 with Retry-After (LiveKit retries, holding the room's later
// events back) and /readyz says why; once Consul is back, the retries are
// accepted and every event is handled once, with nothing lost. A webhook
// nobody reads has no place to fix: both replicas take it during the
// outage.
func TestConsulOutage(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	a, b := c.replica(t, "a"), c.replica(t, "b")
	const rooms = 4
	putRooms(t, c.s3, "calm", rooms)
	for r := range rooms {
		post(t, a.URL, recordingStep("calm", r, 0))
	}
	eventually(t, 10*time.Second, "first events handled", func() bool { return len(c.lk.SentData()) == rooms })

	c.consul.Stop()
	down := time.Now()
	for r := range rooms {
		rep := a
		if r%2 == 1 {
			rep = b
		}
		body := recordingStep("calm", r, 1)
		res, err := postWebhook(http.DefaultClient, rep.URL, body)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" {
			t.Errorf("a webhook during the outage: %d, Retry-After %q; want 503 with Retry-After", res.StatusCode, res.Header.Get("Retry-After"))
		}
	}
	if code, body := readyz(a.URL); code != http.StatusServiceUnavailable || !strings.Contains(body, "coordination") {
		t.Errorf("/readyz during the outage = %d %q, want 503 naming coordination", code, body)
	}
	// A webhook nobody reads needs no coordination: both replicas take it
	// (a duplicate delivery) while Consul is down, and finish it.
	unread := []byte(`{"event":"participant_joined","id":"EV_unread_outage","room":{"sid":"RM_fc","name":"film-club"},"participant":{"sid":"PA_9","identity":"noor"}}`)
	for _, rep := range []*testserver.LKEdgeProcess{a, b} {
		if code := post(t, rep.URL, unread); code != http.StatusOK {
			t.Errorf("a webhook nobody reads, during the outage: %d, want 200", code)
		}
		if got := metric(t, rep.URL, `lkedge_events_processed_total{outcome="skipped"}`); got != 1 {
			t.Errorf("webhooks finished when accepted on %s: %v, want 1", rep.URL, got)
		}
	}
	time.Sleep(30*time.Second - time.Since(down))
	if n := len(c.lk.SentData()); n != rooms {
		t.Errorf("%d events handled while Consul was down, want none beyond the first %d", n, rooms)
	}
	c.consul.Start()
	// The sender retries each room's webhook until it is answered, then
	// sends the room's next one, on either replica.
	var wg sync.WaitGroup
	for r := range rooms {
		wg.Go(func() {
			for step := 1; step < len(recordingSteps); step++ {
				rep := []*testserver.LKEdgeProcess{a, b}[(r+step)%2]
				deadline := time.Now().Add(30 * time.Second)
				for post(t, rep.URL, recordingStep("calm", r, step)) != http.StatusOK {
					if time.Now().After(deadline) {
						t.Errorf("room %d step %d never accepted after Consul returned", r, step)
						return
					}
					time.Sleep(200 * time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
	want := rooms * len(recordingSteps)
	c.handledOnce(t, want, 60*time.Second)
	checkRecordings(t, c.s3, "calm", rooms)
	eventually(t, 10*time.Second, "/readyz recovers", func() bool { code, _ := readyz(a.URL); return code == http.StatusOK })
}

// TestSessionInvalidated: the replicas' Consul sessions are destroyed while
// events flow (an operator, a partition): no event is handled twice, none
// is lost, and no replica crashes.
func TestSessionInvalidated(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	a, b := c.replica(t, "a"), c.replica(t, "b")
	const rooms = 4
	putRooms(t, c.s3, "inval", rooms)
	for step := range recordingSteps {
		if step == 2 {
			sessions, _, err := c.kv.Session().List(nil)
			if err != nil {
				t.Fatal(err)
			}
			destroyed := 0
			for _, s := range sessions {
				if strings.HasPrefix(s.Name, "lkedge replica") {
					if _, err := c.kv.Session().Destroy(s.ID, nil); err != nil {
						t.Fatal(err)
					}
					destroyed++
				}
			}
			if destroyed == 0 {
				t.Fatal("no replica session to destroy")
			}
		}
		var wg sync.WaitGroup
		for r := range rooms {
			for _, rep := range []*testserver.LKEdgeProcess{a, b} {
				wg.Go(func() { post(t, rep.URL, recordingStep("inval", r, step)) })
			}
		}
		wg.Wait()
	}
	want := rooms * len(recordingSteps)
	c.handledOnce(t, want, 30*time.Second)
	checkRecordings(t, c.s3, "inval", rooms)
	for _, rep := range []*testserver.LKEdgeProcess{a, b} {
		if res, err := http.Get(rep.URL + "/healthz"); err != nil || res.StatusCode != http.StatusOK {
			t.Errorf("replica %s not healthy: %v", rep.URL, err)
		}
	}
}

func newConsulCoord(t *testing.T, addr, replica string) Coordinator {
	t.Helper()
	co, err := OpenCoordinator(context.Background(), loadConfig(t, map[string]string{"LKEDGE_COORDINATOR": "consul", "CONSUL_HTTP_ADDR": addr}), replica, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = co.Close() })
	return co
}
