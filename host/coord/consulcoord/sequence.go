package consulcoord

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/lkedge/lkedge/host/coord"
)

// seqState is the value of seq/<key>: the key's sequence in its epoch.
type seqState struct {
	Epoch  uint64            `json:"epoch"`
	Issued uint64            `json:"issued"`
	Done   uint64            `json:"done"`
	Owners map[string]string `json:"owners"` // pending ticket -> replica that admitted it
}

// claimValue is the value of claims/<bucket>/<event>.
type claimValue struct {
	Owner  string `json:"owner"`
	Epoch  uint64 `json:"epoch"`
	Ticket uint64 `json:"ticket"`
}

// maxAdmitRounds bounds the read-then-write rounds of one admission: each
// lost round means another admission of the key won, so many in a row mean
// something is wrong rather than busy.
const maxAdmitRounds = 64

func newEpoch() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand never fails on supported systems
	return binary.BigEndian.Uint64(b[:]) | 1
}

func parseSeq(p *api.KVPair) (seqState, bool) {
	var st seqState
	if p == nil || p.ModifyIndex == 0 || json.Unmarshal(p.Value, &st) != nil || st.Epoch == 0 {
		return seqState{}, false
	}
	if st.Owners == nil {
		st.Owners = map[string]string{}
	}
	return st, true
}

// parseClaim reads a claim; a claim written before tickets existed holds
// only its owner, and its ticket (zero) counts as late.
func parseClaim(p *api.KVPair) (claimValue, bool) {
	if p == nil || p.ModifyIndex == 0 {
		return claimValue{}, false
	}
	var cv claimValue
	if json.Unmarshal(p.Value, &cv) != nil || cv.Owner == "" {
		cv = claimValue{Owner: string(p.Value)}
	}
	return cv, true
}

// Admit implements coord.Coordinator: one read transaction for the event's
// claims and the key's sequence, then one write transaction that creates
// the claim and issues the next ticket, both conditional on what was read.
func (c *Coordinator) Admit(ctx context.Context, eventID, orderKey, owner string) (coord.Ticket, error) {
	if eventID == "" || orderKey == "" || owner == "" {
		return coord.Ticket{}, errors.New("consul: admit needs an event id, an order key and an owner")
	}
	// A ticket is only safe while this replica is a member: without a
	// membership key, others would give the ticket up.
	l, err := c.session(ctx)
	if err != nil {
		return coord.Ticket{}, err
	}
	bucket := time.Now().UnixNano() / int64(c.opts.ClaimBucket)
	cur := c.key("claims", strconv.FormatInt(bucket, 10), segment(eventID))
	prev := c.key("claims", strconv.FormatInt(bucket-1, 10), segment(eventID))
	seqK := c.seqKey(orderKey)
	qo := (&api.QueryOptions{}).WithContext(ctx)
	for range maxAdmitRounds {
		ok, resp, _, err := c.c.Txn().Txn(api.TxnOps{
			{KV: &api.KVTxnOp{Verb: api.KVGetOrEmpty, Key: cur}},
			{KV: &api.KVTxnOp{Verb: api.KVGetOrEmpty, Key: prev}},
			{KV: &api.KVTxnOp{Verb: api.KVGetOrEmpty, Key: seqK}},
		}, qo)
		if err != nil {
			return coord.Ticket{}, fmt.Errorf("consul: admit %s: read: %w", eventID, err)
		}
		if !ok || len(resp.Results) != 3 {
			return coord.Ticket{}, fmt.Errorf("consul: admit %s: read: %s", eventID, txnErrors(resp))
		}
		for _, r := range resp.Results[:2] {
			if cv, found := parseClaim(r.KV); found {
				if cv.Owner != owner {
					return coord.Ticket{}, coord.ErrDuplicate
				}
				t := coord.Ticket{Epoch: cv.Epoch, N: cv.Ticket}
				c.remember(orderKey, t, &held{})
				return t, nil
			}
		}
		st, exists := parseSeq(resp.Results[2].KV)
		var index uint64
		if exists {
			index = resp.Results[2].KV.ModifyIndex
		} else {
			st = seqState{Epoch: newEpoch(), Owners: map[string]string{}}
		}
		first := st.Done == st.Issued // no ticket of the key pending: this one is next
		st.Issued++
		t := coord.Ticket{Epoch: st.Epoch, N: st.Issued}
		st.Owners[strconv.FormatUint(t.N, 10)] = c.opts.Replica
		seqVal, _ := json.Marshal(st)
		claimVal, _ := json.Marshal(claimValue{Owner: owner, Epoch: t.Epoch, Ticket: t.N})
		ok, wrote, _, err := c.c.Txn().Txn(api.TxnOps{
			{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: seqK, Value: seqVal, Index: index}},
			{KV: &api.KVTxnOp{Verb: api.KVCheckNotExists, Key: prev}},
			{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: cur, Value: claimVal, Index: 0}},
		}, qo)
		if err != nil {
			// The write may have happened: the caller asks again, and the
			// claim then tells.
			return coord.Ticket{}, fmt.Errorf("consul: admit %s: %w", eventID, err)
		}
		if ok {
			h := &held{}
			if first && wrote != nil && len(wrote.Results) > 0 && wrote.Results[0].KV != nil {
				h.lease = l
				h.seen = &api.KVPair{Key: seqK, Value: seqVal, ModifyIndex: wrote.Results[0].KV.ModifyIndex}
			}
			c.remember(orderKey, t, h)
			return t, nil
		}
		// Another admission of the key, or of the event, came first: read again.
	}
	return coord.Ticket{}, fmt.Errorf("consul: admit %s: %d rounds lost to concurrent admissions", eventID, maxAdmitRounds)
}

func txnErrors(resp *api.TxnResponse) string {
	if resp == nil || len(resp.Errors) == 0 {
		return "transaction rolled back without a reason"
	}
	return resp.Errors[0].What
}

func (c *Coordinator) seqKey(orderKey string) string { return c.key("seq", segment(orderKey)) }

// held is a ticket this process admitted. When the admission found no
// ticket of the key pending, the ticket was next as it was issued, and
// stays next while the lease it was issued under lives (only a replica
// whose membership is gone has its tickets given up): seen is then the
// sequence as written, and the turn needs no read.
type held struct {
	lease *lease
	seen  *api.KVPair
}

// remember notes a ticket this process holds, so it never gives up its own
// pending events; forget drops it once done.
func (c *Coordinator) remember(orderKey string, t coord.Ticket, h *held) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.mine[orderKey]
	if m == nil {
		m = map[coord.Ticket]*held{}
		c.mine[orderKey] = m
	}
	m[t] = h
}

func (c *Coordinator) forget(orderKey string, t coord.Ticket) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.mine[orderKey], t)
	if len(c.mine[orderKey]) == 0 {
		delete(c.mine, orderKey)
	}
}

func (c *Coordinator) holds(orderKey string, t coord.Ticket) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mine[orderKey][t] != nil
}

// nextAtAdmission returns the sequence as this process wrote it when it
// issued t, if t was next then and the lease it was issued under is still
// this replica's, once: a second turn for t reads the key.
func (c *Coordinator) nextAtAdmission(orderKey string, t coord.Ticket, l *lease) *api.KVPair {
	c.mu.Lock()
	defer c.mu.Unlock()
	h := c.mine[orderKey][t]
	if h == nil || h.seen == nil {
		return nil
	}
	seen := h.seen
	h.seen = nil
	if h.lease != l || l.ctx.Err() != nil {
		return nil
	}
	return seen
}

// goneIn is how long until replica counts as gone: FenceDelay while it
// holds its membership key, less once it has been seen without it, zero or
// less when it has been seen without it for FenceDelay. The first sighting,
// here or by watchMembers, starts the clock.
func (c *Coordinator) goneIn(ctx context.Context, replica string) (time.Duration, error) {
	pair, _, err := c.c.KV().Get(c.memberKey(replica), (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return 0, fmt.Errorf("consul: membership of %s: %w", replica, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if pair != nil && pair.Session != "" {
		delete(c.absent, replica)
		return c.opts.FenceDelay, nil
	}
	since, seen := c.absent[replica]
	if !seen {
		since = time.Now()
		c.absent[replica] = since
	}
	return c.opts.FenceDelay - time.Since(since), nil
}

// turnWait is the longest wait of a turn's blocking query: the sequence
// does not change when the holder of its next ticket dies, so the turn
// looks at the holder's membership at least this often.
const turnWait = 2 * time.Second

// Turn implements coord.Coordinator. It watches the key's sequence with
// blocking queries; when the next pending ticket belongs to a replica whose
// membership has been gone for FenceDelay, it gives that ticket up (the
// replica processes the event late if it comes back).
func (c *Coordinator) Turn(ctx context.Context, orderKey string, t coord.Ticket) (coord.Turn, error) {
	seqK := c.seqKey(orderKey)
	var index uint64
	wait := turnWait
	for {
		l, err := c.session(ctx)
		if err != nil {
			return nil, err
		}
		if seen := c.nextAtAdmission(orderKey, t, l); seen != nil {
			return &turn{c: c, key: orderKey, t: t, lease: l, seen: seen}, nil
		}
		pair, meta, err := c.watch.KV().Get(seqK, (&api.QueryOptions{WaitIndex: index, WaitTime: wait}).WithContext(ctx))
		if err != nil {
			return nil, fmt.Errorf("consul: turn on %s: %w", orderKey, err)
		}
		st, exists := parseSeq(pair)
		switch {
		case !exists || st.Epoch != t.Epoch || st.Done >= t.N:
			return &turn{c: c, key: orderKey, t: t, lease: l, late: true}, nil
		case st.Done+1 == t.N:
			return &turn{c: c, key: orderKey, t: t, lease: l, seen: pair}, nil
		}
		next := coord.Ticket{Epoch: st.Epoch, N: st.Done + 1}
		holder := st.Owners[strconv.FormatUint(next.N, 10)]
		var gone bool
		left := turnWait
		switch holder {
		case "":
			gone = true // nobody holds it: nothing to wait for
		case c.opts.Replica:
			// Ours only if this process admitted it; otherwise it belonged
			// to this replica before a restart and its record is gone.
			gone = !c.holds(orderKey, next)
		default:
			if left, err = c.goneIn(ctx, holder); err != nil {
				return nil, err
			}
			gone = left <= 0
		}
		if gone {
			if err := c.giveUp(ctx, seqK, pair.ModifyIndex, st, next.N, holder); err != nil {
				return nil, err
			}
			index = 0
			continue
		}
		index = meta.LastIndex
		// A holder already gone is given up when FenceDelay ends, not at
		// the next wake-up after it.
		wait = min(turnWait, max(left, 10*time.Millisecond))
	}
}

// giveUp marks ticket n done on behalf of a replica that is gone, if the
// sequence is still as read and, in the same transaction, the holder has
// not come back: a returning replica either finds its ticket given up (and
// processes the event late) or keeps it, never both.
func (c *Coordinator) giveUp(ctx context.Context, seqK string, index uint64, st seqState, n uint64, holder string) error {
	st.Done = n
	delete(st.Owners, strconv.FormatUint(n, 10))
	val, _ := json.Marshal(st)
	ops := api.TxnOps{{KV: &api.KVTxnOp{Verb: api.KVCAS, Key: seqK, Value: val, Index: index}}}
	if holder != "" && holder != c.opts.Replica {
		ops = append(ops, &api.TxnOp{KV: &api.KVTxnOp{Verb: api.KVCheckNotExists, Key: c.memberKey(holder)}})
	}
	ok, _, _, err := c.c.Txn().Txn(ops, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return fmt.Errorf("consul: give up ticket %d of %s: %w", n, seqK, err)
	}
	if ok {
		c.log.Warn("gave up an event of a replica that is gone; it is processed late if that replica returns",
			"key", seqK, "ticket", n, "holder", holder)
	}
	return nil
}

type turn struct {
	c     *Coordinator
	key   string
	t     coord.Ticket
	lease *lease
	late  bool
	// seen is the sequence as read when the turn came: Done tries its
	// compare-and-swap on it first, and reads the key only if that fails,
	// which saves a round trip unless a later event of the key was
	// admitted meanwhile.
	seen *api.KVPair
}

func (tu *turn) Context() context.Context { return tu.lease.ctx }

func (tu *turn) Late() bool { return tu.late }

// doneRetry caps the wait between attempts to record a turn done, so a
// key held because Consul was unreachable moves within a second of its
// return.
const doneRetry = time.Second

// Done implements coord.Turn: it advances the key's sequence past this
// ticket, deleting the key when no ticket is pending.
func (tu *turn) Done(ctx context.Context) error {
	c := tu.c
	defer c.forget(tu.key, tu.t)
	if tu.late {
		return nil
	}
	seqK := c.seqKey(tu.key)
	wait := 50 * time.Millisecond
	for {
		err := tu.advance(ctx, seqK)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("consul: done %d of %s: %w", tu.t.N, tu.key, err)
		}
		c.log.Warn("recording an event done failed; retrying", "key", tu.key, "ticket", tu.t.N, "retry_in", wait.String(), "err", err)
		sleep(ctx, wait)
		wait = min(2*wait, doneRetry)
	}
}

func (tu *turn) advance(ctx context.Context, seqK string) error {
	pair := tu.seen
	tu.seen = nil
	for {
		var err error
		if pair == nil {
			if pair, _, err = tu.c.c.KV().Get(seqK, (&api.QueryOptions{}).WithContext(ctx)); err != nil {
				return err
			}
		}
		st, exists := parseSeq(pair)
		if !exists || st.Epoch != tu.t.Epoch || st.Done >= tu.t.N {
			return nil // given up meanwhile: nothing to record
		}
		st.Done = tu.t.N
		delete(st.Owners, strconv.FormatUint(tu.t.N, 10))
		var ok bool
		if st.Done == st.Issued {
			ok, _, err = tu.c.c.KV().DeleteCAS(&api.KVPair{Key: seqK, ModifyIndex: pair.ModifyIndex}, (&api.WriteOptions{}).WithContext(ctx))
		} else {
			val, _ := json.Marshal(st)
			ok, _, err = tu.c.c.KV().CAS(&api.KVPair{Key: seqK, Value: val, ModifyIndex: pair.ModifyIndex}, (&api.WriteOptions{}).WithContext(ctx))
		}
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		// An admission changed the key meanwhile: read it again.
		pair = nil
	}
}

// pruneSequences deletes sequences stuck on replicas that are gone: a key
// whose every pending ticket belongs to a replica without membership for
// FenceDelay would otherwise stay forever when no later event of the key
// comes to give them up.
func (c *Coordinator) pruneSequences(ctx context.Context) error {
	pairs, _, err := c.c.KV().List(c.key("seq")+"/", (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return fmt.Errorf("consul: prune sequences: %w", err)
	}
	for _, p := range pairs {
		st, ok := parseSeq(p)
		if !ok {
			continue
		}
		stuck := len(st.Owners) > 0
		for _, holder := range st.Owners {
			if holder == c.opts.Replica {
				stuck = false
				break
			}
			left, err := c.goneIn(ctx, holder)
			if err != nil {
				return err
			}
			if left > 0 {
				stuck = false
				break
			}
		}
		if !stuck {
			continue
		}
		if ok, _, err := c.c.KV().DeleteCAS(&api.KVPair{Key: p.Key, ModifyIndex: p.ModifyIndex}, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
			return fmt.Errorf("consul: prune sequence %s: %w", p.Key, err)
		} else if ok {
			c.log.Warn("deleted a sequence whose pending events all belong to replicas that are gone", "key", p.Key, "pending", len(st.Owners))
		}
	}
	return nil
}
