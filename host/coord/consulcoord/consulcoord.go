// Package consulcoord is the Consul backend of lkedge's coordinator, so
// several replicas behind one load balancer behave like one.
//
// Key layout under the prefix (default "lkedge/"):
//
//	locks/<name>              recording locks, each held by its own session
//	                          (TTL = the lock's TTL, LockDelay 0, behaviour delete)
//	claims/<bucket>/<event>   one key per admitted event id, created with CAS
//	                          index 0, naming its owner and ticket; buckets are
//	                          windows of time the leader deletes when old
//	seq/<key>                 an order key's sequence: tickets issued, tickets
//	                          done, and the replica holding each pending one;
//	                          deleted when every ticket is done
//	members/<replica>         held by the replica's session while it lives; its
//	                          value, a heartbeat count, changes every second
//	leader/<role>             leadership, held by the replica's session
//	events/<type>/<id>        system events, read with blocking queries
//
// Every replica keeps one session (TTL 10 s, behaviour delete) renewed every
// second, and beats its membership key in the same round. Consul may keep a
// session up to twice its TTL, so the replicas watch each other's
// heartbeats instead: a replica whose heartbeat has not changed for 5.5 s
// (by the watcher's clock) has its membership deleted and its session
// destroyed by the others, long after it stopped its own work (4 s without a
// successful round). A replica starting with the id of a predecessor
// destroys the predecessor's sessions first, so its leadership and
// membership move at once. docs/design.md explains the ordering.
package consulcoord

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/lkedge/lkedge/host/coord"
)

// maxWait is the longest wait of a blocking query.
const maxWait = 30 * time.Second

// noLockDelay is the shortest lock delay the API client can send: it omits
// a zero, which Consul reads as its 15 s default.
const noLockDelay = time.Millisecond

// idleConns is how many idle connections to Consul the default transport
// keeps. Go's default transport keeps two per host; with a replica's
// blocking queries, admissions and turns in flight at once, every request
// past two closed its connection on return and the next one dialed anew:
// about one new connection per event, in lkedge and in Consul. Consul
// takes at most 200 connections from one address by default
// (limits.http_max_conns_per_client), so a few replicas on one host stay
// under it.
const idleConns = 32

// pooledTransport is the default Options.Transport.
func pooledTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = idleConns
	return t
}

// Options configures the backend.
type Options struct {
	// Address and Token of the Consul agent (CONSUL_HTTP_ADDR,
	// CONSUL_HTTP_TOKEN).
	Address string
	Token   string
	// CallTimeout bounds every call that is not a blocking query (default
	// 10 s): a Consul that takes a connection but never answers (restarting,
	// no leader yet) must not stall event processing.
	CallTimeout time.Duration
	// Transport carries the HTTP requests (default: a transport of its own
	// that keeps up to idleConns idle connections to Consul); set it for
	// custom TLS, or to observe the calls.
	Transport http.RoundTripper
	// Prefix of every key lkedge writes (default "lkedge/").
	Prefix string
	// Replica names this process in sessions and lock values.
	Replica string
	// SessionTTL of the replica session (default 10 s, Consul's minimum).
	// The other replicas end a dead replica's session sooner (endAfter); the
	// TTL is the bound when no replica is left to do it.
	SessionTTL time.Duration
	// ClaimBucket is the width of one claims window; a duplicate is caught
	// for between one and two of them (default 5 min).
	ClaimBucket time.Duration
	// FenceDelay is how long a replica's membership must have been seen
	// gone before another replica gives up the events it admitted and goes
	// on with the room (default 3 s). It must exceed the renewal interval
	// (1 s) plus the time a replica takes to stop its work once it learns
	// its session is lost, so the two never work on one room at once.
	FenceDelay time.Duration
	Logger     *slog.Logger
}

// Coordinator implements coord.Coordinator on Consul.
type Coordinator struct {
	c     *api.Client // calls, bounded by CallTimeout
	watch *api.Client // blocking queries, bounded by their wait time plus CallTimeout
	opts  Options
	log   *slog.Logger

	mu    sync.Mutex
	lease *lease // replica session, nil until made
	// healthy is when the current lease's rounds last began to succeed
	// (zero while they fail, or without a lease): a replica whose own
	// heartbeat fails cannot tell a dead peer from a Consul that takes no
	// writes, so it ends nobody and counts silence from then on.
	healthy time.Time
	mine    map[string]map[coord.Ticket]*held // tickets this process holds, per sequence key
	absent  map[string]time.Time              // replicas first seen without membership
	heard   map[string]heartbeat              // other replicas' membership keys, as watchMembers last saw them

	// halt stops the renewal and the membership watch and waits for them.
	halt    func()
	stopped sync.WaitGroup
}

// heartbeat is a membership key as last seen changing.
type heartbeat struct {
	index   uint64    // the key's ModifyIndex
	session string    // the session holding it
	at      time.Time // when this process saw the index first
}

// lease is one replica session and what depends on it: ctx ends when the
// session is lost or may have lapsed, fencing the work done under it.
type lease struct {
	sid    string
	ctx    context.Context
	cancel context.CancelFunc
	// fence ends the lease when no round succeeded for fenceAfter: a
	// timer of its own, so a renewal call that hangs cannot delay it.
	fence *time.Timer
	beats uint64 // heartbeats written; only the renewal goroutine uses it
}

var _ coord.Coordinator = (*Coordinator)(nil)

// New returns a coordinator; it checks that the agent answers and has a
// leader, so a wrong CONSUL_HTTP_ADDR fails at start-up.
func New(ctx context.Context, opts Options) (*Coordinator, error) {
	if opts.Address == "" {
		return nil, errors.New("consul: no agent address")
	}
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = 10 * time.Second
	}
	if opts.Prefix == "" {
		opts.Prefix = "lkedge/"
	}
	if !strings.HasSuffix(opts.Prefix, "/") {
		opts.Prefix += "/"
	}
	if opts.Replica == "" {
		return nil, errors.New("consul: no replica name")
	}
	if opts.SessionTTL == 0 {
		opts.SessionTTL = 10 * time.Second
	}
	if opts.SessionTTL < 10*time.Second || opts.SessionTTL > 24*time.Hour {
		return nil, fmt.Errorf("consul: session TTL %s is outside Consul's 10s to 24h", opts.SessionTTL)
	}
	if opts.ClaimBucket <= 0 {
		opts.ClaimBucket = 5 * time.Minute
	}
	if opts.FenceDelay <= 0 {
		opts.FenceDelay = 3 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Transport == nil {
		opts.Transport = pooledTransport()
	}
	client := func(timeout time.Duration) (*api.Client, error) {
		return api.NewClient(&api.Config{Address: opts.Address, Token: opts.Token, HttpClient: &http.Client{Timeout: timeout, Transport: opts.Transport}})
	}
	call, err := client(opts.CallTimeout)
	if err != nil {
		return nil, fmt.Errorf("consul: %w", err)
	}
	watch, err := client(maxWait + opts.CallTimeout)
	if err != nil {
		return nil, fmt.Errorf("consul: %w", err)
	}
	c := &Coordinator{c: call, watch: watch, opts: opts, log: opts.Logger.With("component", "consul"),
		mine: map[string]map[coord.Ticket]*held{}, absent: map[string]time.Time{}, heard: map[string]heartbeat{}}
	if err := c.Ping(ctx); err != nil {
		return nil, err
	}
	// At once, not on first use: a restarted replica ends its
	// predecessor's session now, so its leadership and its rooms move
	// without waiting for the predecessor's TTL.
	if _, err := c.session(ctx); err != nil {
		return nil, err
	}
	bg, stop := context.WithCancel(context.Background())
	c.halt = sync.OnceFunc(func() {
		stop()
		c.stopped.Wait()
	})
	c.stopped.Add(2)
	go c.renew(bg)
	go c.watchMembers(bg)
	return c, nil
}

// Close ends the replica session, which frees its membership and leader
// keys at once instead of after the TTL.
func (c *Coordinator) Close() error {
	c.halt()
	c.mu.Lock()
	l := c.lease
	c.lease = nil
	c.mu.Unlock()
	if l == nil {
		return nil
	}
	l.fence.Stop()
	l.cancel()
	if _, err := c.c.Session().Destroy(l.sid, nil); err != nil {
		return fmt.Errorf("consul: destroy session: %w", err)
	}
	return nil
}

// Ping implements coord.Coordinator: the agent answers and knows a leader.
func (c *Coordinator) Ping(ctx context.Context) error {
	leader, err := c.c.Status().LeaderWithQueryOptions((&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return fmt.Errorf("consul: %w", err)
	}
	if leader == "" {
		return errors.New("consul: no cluster leader")
	}
	return nil
}

func (c *Coordinator) key(parts ...string) string {
	return c.opts.Prefix + strings.Join(parts, "/")
}

// segment makes an arbitrary name (room names are free text) one key segment.
func segment(s string) string { return url.PathEscape(s) }

// sessionName names this replica's sessions, so a successor finds them.
func (c *Coordinator) sessionName() string { return "lkedge replica " + c.opts.Replica }

// session returns the replica session, making one if there is none: it
// destroys every session left under this replica's name (a predecessor's,
// or one this process lost contact with), creates a new one and takes the
// membership key with it.
func (c *Coordinator) session(ctx context.Context) (*lease, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lease != nil {
		return c.lease, nil
	}
	qo := (&api.QueryOptions{}).WithContext(ctx)
	wo := (&api.WriteOptions{}).WithContext(ctx)
	old, _, err := c.c.Session().List(qo)
	if err != nil {
		return nil, fmt.Errorf("consul: list sessions: %w", err)
	}
	for _, s := range old {
		if s.Name != c.sessionName() {
			continue
		}
		if _, err := c.c.Session().Destroy(s.ID, wo); err != nil {
			return nil, fmt.Errorf("consul: end the previous session of replica %s: %w", c.opts.Replica, err)
		}
		c.log.Info("ended a previous session of this replica", "session", s.ID)
	}
	sent := time.Now()
	sid, _, err := c.c.Session().Create(&api.SessionEntry{
		Name:      c.sessionName(),
		TTL:       c.opts.SessionTTL.String(),
		LockDelay: noLockDelay,
		Behavior:  api.SessionBehaviorDelete,
	}, wo)
	if err != nil {
		return nil, fmt.Errorf("consul: create replica session: %w", err)
	}
	ok, _, err := c.c.KV().Acquire(&api.KVPair{Key: c.memberKey(c.opts.Replica), Value: []byte("0"), Session: sid}, wo)
	if err == nil && !ok {
		err = errors.New("held by another session")
	}
	if err != nil {
		if _, derr := c.c.Session().Destroy(sid, nil); derr != nil {
			c.log.Warn("destroying an unused replica session failed", "session", sid, "err", derr)
		}
		return nil, fmt.Errorf("consul: membership of replica %s: %w", c.opts.Replica, err)
	}
	lctx, cancel := context.WithCancel(context.Background())
	l := &lease{sid: sid, ctx: lctx, cancel: cancel}
	l.fence = time.AfterFunc(fenceAfter-time.Since(sent), func() {
		c.dropSession(l, "no renewal and heartbeat succeeded for "+fenceAfter.String()+": the other replicas may end it")
	})
	c.lease = l
	c.healthy = time.Now()
	return l, nil
}

func (c *Coordinator) memberKey(replica string) string { return c.key("members", segment(replica)) }

// dropSession forgets a session that is lost, or may have lapsed, and
// fences the work done under it.
func (c *Coordinator) dropSession(l *lease, why string) {
	c.mu.Lock()
	if c.lease == l {
		c.lease = nil
		c.healthy = time.Time{}
		c.log.Warn("replica session lost: work under it stops; a new one is made on next use", "session", l.sid, "reason", why)
	}
	c.mu.Unlock()
	l.fence.Stop()
	l.cancel()
}

// The liveness timings. docs/design.md argues them; in short:
//
//   - renewEvery: one round (session renewal, then heartbeat) a second, so
//     a destroyed session is noticed within a second and FenceDelay can be
//     short. renewTimeout bounds a round, so the next one is tried on time.
//   - fenceAfter: a replica stops its work when no round succeeded for this
//     long after it was sent. It exceeds renewEvery + renewTimeout, so one
//     round that hangs does not stop a healthy replica, and it is below
//     the TTL, before which Consul never lets the session lapse.
//   - endAfter: the others end a replica whose heartbeat they have not seen
//     change for this long. A heartbeat is seen after it was sent, so the
//     silent replica stopped its work at least endAfter - fenceAfter
//     (1.5 s) before its session ends and its leadership moves; its rooms
//     move FenceDelay later still. endAfter + FenceDelay (3 s) leaves the
//     room a second of the TTL for a heartbeat's way to the watcher.
const (
	renewEvery   = time.Second
	renewTimeout = 2 * time.Second
	fenceAfter   = 4 * time.Second
	endAfter     = 5500 * time.Millisecond
)

// errLost is a round's answer that the session, or its membership, is gone.
var errLost = errors.New("replica session lost")

// renew keeps the replica session alive and its membership key beating. A
// replica whose rounds fail stops its work (the lease's fence timer) before
// the others may end its session, and before Consul could let it lapse.
func (c *Coordinator) renew(ctx context.Context) {
	defer c.stopped.Done()
	t := time.NewTicker(renewEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c.mu.Lock()
		l := c.lease
		c.mu.Unlock()
		if l == nil {
			continue
		}
		sent := time.Now()
		rctx, cancel := context.WithTimeout(ctx, renewTimeout)
		err := c.round(rctx, l)
		cancel()
		switch {
		case errors.Is(err, errLost):
			c.dropSession(l, err.Error())
		case err != nil:
			c.mu.Lock()
			if c.lease == l {
				c.healthy = time.Time{}
			}
			c.mu.Unlock()
			c.log.Warn("renewing the replica session failed", "err", err)
		case l.ctx.Err() == nil:
			l.fence.Reset(fenceAfter - time.Since(sent))
			c.mu.Lock()
			if c.lease == l && c.healthy.IsZero() {
				c.healthy = time.Now()
			}
			c.mu.Unlock()
		}
	}
}

// round renews the session, then writes the next heartbeat into the
// membership key, on condition that the session still holds it: once
// another replica has deleted the key, no heartbeat of this session can
// succeed again, which is what lets that replica end the session safely.
func (c *Coordinator) round(ctx context.Context, l *lease) error {
	entry, _, err := c.c.Session().Renew(l.sid, (&api.WriteOptions{}).WithContext(ctx))
	switch {
	case err != nil && strings.Contains(err.Error(), "404"), err == nil && entry == nil:
		return fmt.Errorf("%w: consul no longer knows it", errLost)
	case err != nil:
		return fmt.Errorf("renew: %w", err)
	}
	l.beats++
	key := c.memberKey(c.opts.Replica)
	ok, resp, _, err := c.c.Txn().Txn(api.TxnOps{
		{KV: &api.KVTxnOp{Verb: api.KVCheckSession, Key: key, Session: l.sid}},
		{KV: &api.KVTxnOp{Verb: api.KVSet, Key: key, Value: []byte(strconv.FormatUint(l.beats, 10))}},
	}, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return fmt.Errorf("heartbeat: %w", err)
	}
	if !ok {
		return fmt.Errorf("%w: its membership was ended (%s)", errLost, txnErrors(resp))
	}
	return nil
}

// watchMembers ends the sessions of other replicas whose heartbeat stopped.
// It watches members/ with a blocking query and notes, by this process's
// clock, when each key's index last changed; a key unchanged for endAfter
// is deleted on condition that its index is still the one seen (a
// heartbeat that came meanwhile wins), then its session is destroyed,
// which frees the dead replica's leadership and locks at once.
//
// Silence is counted only from when this process's own reads and
// heartbeats last began to succeed: during an outage every heartbeat stops,
// and a replica that was cut off must give the others a whole endAfter to
// be heard again before it ends anyone.
func (c *Coordinator) watchMembers(ctx context.Context) {
	defer c.stopped.Done()
	prefix := c.key("members") + "/"
	var index uint64
	var readsSince time.Time       // reads have all succeeded since; zero after a failure
	unended := map[string]string{} // sessions whose membership was deleted, not yet destroyed: session -> replica
	wait := renewEvery
	for ctx.Err() == nil {
		pairs, meta, err := c.watch.KV().List(prefix, (&api.QueryOptions{WaitIndex: index, WaitTime: wait}).WithContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if !readsSince.IsZero() {
				c.log.Warn("membership watch: consul query failed; nobody is ended until it answers again", "err", err)
			}
			readsSince, index = time.Time{}, 0
			sleep(ctx, renewEvery)
			continue
		}
		now := time.Now()
		if readsSince.IsZero() {
			readsSince = now
		}
		if meta.LastIndex >= index {
			index = meta.LastIndex
		} else { // Consul's index went back (restore): start over
			index = 0
		}
		silent, next := c.observe(prefix, pairs, now, readsSince)
		for _, r := range silent {
			c.endMember(ctx, r, now, unended)
		}
		for sid, r := range unended {
			if _, err := c.c.Session().Destroy(sid, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
				c.log.Warn("destroying the session of a silent replica failed; retrying", "replica", r, "session", sid, "err", err)
				continue
			}
			delete(unended, sid)
		}
		wait = max(next, 50*time.Millisecond)
	}
}

// observe records the membership keys read at now and returns the other
// replicas silent for endAfter, and how long until the next one may be.
func (c *Coordinator) observe(prefix string, pairs api.KVPairs, now, readsSince time.Time) ([]string, time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	present := map[string]bool{}
	for _, p := range pairs {
		r, err := url.PathUnescape(strings.TrimPrefix(p.Key, prefix))
		if err != nil || p.Session == "" {
			continue
		}
		present[r] = true
		delete(c.absent, r)
		if h, ok := c.heard[r]; !ok || h.index != p.ModifyIndex || h.session != p.Session {
			c.heard[r] = heartbeat{index: p.ModifyIndex, session: p.Session, at: now}
		}
	}
	for r := range c.heard {
		if present[r] {
			continue
		}
		delete(c.heard, r)
		if _, ok := c.absent[r]; !ok {
			c.absent[r] = now // gone since the last read at the latest: FenceDelay counts from here
		}
	}
	next := renewEvery
	if c.healthy.IsZero() {
		return nil, next
	}
	from := later(readsSince, c.healthy)
	var silent []string
	for r, h := range c.heard {
		if r == c.opts.Replica {
			continue
		}
		left := endAfter - now.Sub(later(h.at, from))
		if left <= 0 {
			silent = append(silent, r)
		} else {
			next = min(next, left)
		}
	}
	return silent, next
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// endMember deletes the membership key of replica r if it is still at the
// index this process last saw, and queues its session to be destroyed.
func (c *Coordinator) endMember(ctx context.Context, r string, now time.Time, unended map[string]string) {
	c.mu.Lock()
	h, ok := c.heard[r]
	c.mu.Unlock()
	if !ok {
		return
	}
	deleted, _, err := c.c.KV().DeleteCAS(&api.KVPair{Key: c.memberKey(r), ModifyIndex: h.index}, (&api.WriteOptions{}).WithContext(ctx))
	if err != nil {
		c.log.Warn("ending a silent replica failed; retrying", "replica", r, "err", err)
		return
	}
	if !deleted {
		return // it beat meanwhile, or left: the next read tells
	}
	c.log.Warn("ended the session of a replica whose heartbeat stopped: its leadership and rooms move",
		"replica", r, "session", h.session, "silent_for", now.Sub(h.at).Round(time.Millisecond).String())
	unended[h.session] = r
}

// lockValue is stored in a recording lock key.
type lockValue struct {
	AcquiredAt int64  `json:"acquiredAt"` // unix ms
	ExpiresAt  int64  `json:"expiresAt"`  // unix ms
	Holder     string `json:"holder"`
}

// Acquire implements coord.Coordinator with a session of the lock's own
// (TTL = ttl, LockDelay 0, behaviour delete): the lock lapses by itself when
// nobody releases it, whichever replica took it. Consul may keep a session up
// to twice its TTL.
func (c *Coordinator) Acquire(ctx context.Context, name string, ttl time.Duration) (bool, error) {
	if name == "" {
		return false, errors.New("consul: empty lock name")
	}
	if ttl < 10*time.Second || ttl > 24*time.Hour {
		return false, fmt.Errorf("consul: lock TTL %s is outside Consul's 10s to 24h", ttl)
	}
	wo := (&api.WriteOptions{}).WithContext(ctx)
	sid, _, err := c.c.Session().Create(&api.SessionEntry{
		Name: "lkedge lock " + name, TTL: ttl.String(), LockDelay: noLockDelay, Behavior: api.SessionBehaviorDelete,
	}, wo)
	if err != nil {
		return false, fmt.Errorf("consul: lock %s: create session: %w", name, err)
	}
	now := time.Now()
	val, _ := json.Marshal(lockValue{AcquiredAt: now.UnixMilli(), ExpiresAt: now.Add(ttl).UnixMilli(), Holder: c.opts.Replica})
	ok, _, err := c.c.KV().Acquire(&api.KVPair{Key: c.key("locks", segment(name)), Value: val, Session: sid}, wo)
	if err != nil || !ok {
		if _, derr := c.c.Session().Destroy(sid, nil); derr != nil {
			c.log.Warn("destroying an unused lock session failed", "lock", name, "err", derr)
		}
	}
	if err != nil {
		return false, fmt.Errorf("consul: lock %s: %w", name, err)
	}
	return ok, nil
}

// Release implements coord.Coordinator: destroying the holder's session
// deletes the key, whichever replica took the lock.
func (c *Coordinator) Release(ctx context.Context, name string) (bool, error) {
	pair, _, err := c.c.KV().Get(c.key("locks", segment(name)), (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return false, fmt.Errorf("consul: release %s: %w", name, err)
	}
	if pair == nil || pair.Session == "" {
		return false, nil
	}
	if _, err := c.c.Session().Destroy(pair.Session, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		return false, fmt.Errorf("consul: release %s: %w", name, err)
	}
	return true, nil
}

// Locks implements coord.Coordinator.
func (c *Coordinator) Locks(ctx context.Context, prefix string) ([]coord.LockInfo, error) {
	pairs, _, err := c.c.KV().List(c.key("locks", segment(prefix)), (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("consul: list locks: %w", err)
	}
	var out []coord.LockInfo
	for _, p := range pairs {
		if p.Session == "" {
			continue
		}
		name, err := url.PathUnescape(strings.TrimPrefix(p.Key, c.key("locks")+"/"))
		if err != nil {
			continue
		}
		var v lockValue
		_ = json.Unmarshal(p.Value, &v) // a foreign value still lists, without times
		out = append(out, coord.LockInfo{Name: name, AcquiredAt: time.UnixMilli(v.AcquiredAt), ExpiresAt: time.UnixMilli(v.ExpiresAt)})
	}
	slices.SortFunc(out, func(a, b coord.LockInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Publish implements coord.Coordinator: the event is a key that subscribers'
// blocking queries see; the leader deletes it after a minute.
func (c *Coordinator) Publish(ctx context.Context, ev coord.Event) error {
	if ev.Type == "" {
		return errors.New("consul: empty event type")
	}
	id := strconv.FormatInt(time.Now().UnixNano(), 10) + "-" + c.opts.Replica
	if _, err := c.c.KV().Put(&api.KVPair{Key: c.key("events", segment(ev.Type), segment(id)), Value: ev.Payload}, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		return fmt.Errorf("consul: publish %s: %w", ev.Type, err)
	}
	return nil
}

// Subscribe implements coord.Coordinator with a blocking query on the
// event type's folder. It survives Consul outages: it retries until ctx ends.
func (c *Coordinator) Subscribe(ctx context.Context, eventType string) (<-chan coord.Event, error) {
	if eventType == "" {
		return nil, errors.New("consul: empty event type")
	}
	prefix := c.key("events", segment(eventType)) + "/"
	// The current index first, so only events published from now on arrive.
	_, meta, err := c.c.KV().List(prefix, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("consul: subscribe %s: %w", eventType, err)
	}
	ch := make(chan coord.Event, 64)
	go func() {
		defer close(ch)
		index := meta.LastIndex
		for ctx.Err() == nil {
			pairs, meta, err := c.watch.KV().List(prefix, (&api.QueryOptions{WaitIndex: index, WaitTime: maxWait}).WithContext(ctx))
			if err != nil {
				if ctx.Err() == nil {
					c.log.Warn("event subscription: consul query failed; retrying", "type", eventType, "err", err)
					sleep(ctx, time.Second)
				}
				continue
			}
			for _, p := range pairs {
				if p.CreateIndex > index {
					select {
					case ch <- coord.Event{Type: eventType, Payload: p.Value}:
					default: // a slow subscriber misses events rather than stall
					}
				}
			}
			if meta.LastIndex < index { // Consul's index went back (restore): start over
				index = 0
			} else {
				index = meta.LastIndex
			}
		}
	}()
	return ch, nil
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// waitFree blocks until the order key has no holder (or a while has passed).
func (c *Coordinator) waitFree(ctx context.Context, key string) error {
	var index uint64
	for {
		pair, meta, err := c.watch.KV().Get(key, (&api.QueryOptions{WaitIndex: index, WaitTime: 10 * time.Second}).WithContext(ctx))
		if err != nil {
			return fmt.Errorf("consul: wait for %s: %w", key, err)
		}
		if pair == nil || pair.Session == "" || meta.LastIndex == index {
			return nil
		}
		index = meta.LastIndex
	}
}

// Lead implements coord.Coordinator with the replica session on
// leader/<role>: when this replica dies, the others end its session once
// its heartbeat has been silent for endAfter, and one of them takes over.
func (c *Coordinator) Lead(ctx context.Context, role string, fn func(ctx context.Context)) error {
	key := c.key("leader", segment(role))
	for ctx.Err() == nil {
		l, err := c.session(ctx)
		if err != nil {
			c.log.Warn("leader election: no session; retrying", "role", role, "err", err)
			sleep(ctx, time.Second)
			continue
		}
		sid := l.sid
		ok, _, err := c.c.KV().Acquire(&api.KVPair{Key: key, Value: []byte(c.opts.Replica), Session: sid}, (&api.WriteOptions{}).WithContext(ctx))
		switch {
		case err != nil:
			if ctx.Err() == nil {
				c.log.Warn("leader election failed; retrying", "role", role, "err", err)
				sleep(ctx, time.Second)
			}
		case ok:
			c.log.Info("leadership acquired", "role", role)
			c.lead(ctx, key, l, fn)
			c.log.Info("leadership ended", "role", role)
		default:
			if err := c.waitFree(ctx, key); err != nil && ctx.Err() == nil {
				sleep(ctx, time.Second)
			}
		}
	}
	return ctx.Err()
}

// lead runs fn until ctx ends, the session is lost, or the leader key
// stops being held by the session.
func (c *Coordinator) lead(ctx context.Context, key string, l *lease, fn func(context.Context)) {
	sid := l.sid
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopLeading := context.AfterFunc(l.ctx, cancel)
	defer stopLeading()
	go func() {
		defer cancel()
		var index uint64
		for lctx.Err() == nil {
			pair, meta, err := c.watch.KV().Get(key, (&api.QueryOptions{WaitIndex: index, WaitTime: c.opts.SessionTTL}).WithContext(lctx))
			if err != nil {
				// Consul unreachable: keep leading until the session would
				// have lapsed, then assume another replica may lead.
				c.log.Warn("leader watch failed", "err", err)
				sleep(lctx, c.opts.SessionTTL)
				if _, _, err := c.c.KV().Get(key, (&api.QueryOptions{}).WithContext(lctx)); err != nil {
					return
				}
				continue
			}
			if pair == nil || pair.Session != sid {
				return
			}
			index = meta.LastIndex
		}
	}()
	fn(lctx)
	// Stepping down while alive (shutdown included): let another replica
	// lead at once rather than after the session TTL.
	if _, _, err := c.c.KV().Release(&api.KVPair{Key: key, Session: sid}, nil); err != nil {
		c.log.Debug("releasing leadership failed; the session TTL frees it", "err", err)
	}
}

// Prune deletes claim windows older than the previous one, system events
// older than a minute, and sequences stuck on replicas that are gone. The
// leader runs it periodically.
func (c *Coordinator) Prune(ctx context.Context) error {
	kv := c.c.KV()
	q := (&api.QueryOptions{}).WithContext(ctx)
	w := (&api.WriteOptions{}).WithContext(ctx)
	bucket := time.Now().UnixNano() / int64(c.opts.ClaimBucket)
	folders, _, err := kv.Keys(c.key("claims")+"/", "/", q)
	if err != nil {
		return fmt.Errorf("consul: prune claims: %w", err)
	}
	for _, f := range folders {
		b, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(f, c.key("claims")+"/"), "/"), 10, 64)
		if err == nil && b < bucket-1 {
			if _, err := kv.DeleteTree(f, w); err != nil {
				return fmt.Errorf("consul: prune claims %s: %w", f, err)
			}
		}
	}
	if err := c.pruneSequences(ctx); err != nil {
		return err
	}
	keys, _, err := kv.Keys(c.key("events")+"/", "", q)
	if err != nil {
		return fmt.Errorf("consul: prune events: %w", err)
	}
	old := time.Now().Add(-time.Minute).UnixNano()
	for _, k := range keys {
		id := k[strings.LastIndexByte(k, '/')+1:]
		ns, _, _ := strings.Cut(id, "-")
		if t, err := strconv.ParseInt(ns, 10, 64); err == nil && t < old {
			if _, err := kv.Delete(k, w); err != nil {
				return fmt.Errorf("consul: prune event %s: %w", k, err)
			}
		}
	}
	return nil
}
