package meet

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/lkedge/lkedge/host/livekitapi"
	"github.com/lkedge/lkedge/host/store"
)

// countingStore counts the Gets and Puts that reach the store, by key.
type countingStore struct {
	store.Store
	mu  sync.Mutex
	ops map[string]int // "Get <key>", "Put <key>"
}

func (c *countingStore) count(op, key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ops[op+" "+key]++
}

func (c *countingStore) Get(ctx context.Context, key string) (store.Object, error) {
	c.count("Get", key)
	return c.Store.Get(ctx, key)
}

func (c *countingStore) Put(ctx context.Context, key string, body []byte, opts store.PutOptions) (string, error) {
	c.count("Put", key)
	return c.Store.Put(ctx, key, body, opts)
}

// take returns the Gets and Puts of key since the last take.
func (c *countingStore) take(key string) (gets, puts int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	gets, puts = c.ops["Get "+key], c.ops["Put "+key]
	delete(c.ops, "Get "+key)
	delete(c.ops, "Put "+key)
	return gets, puts
}

// newCountingEnv is newEnv with the Handler's store operations counted.
func newCountingEnv(t *testing.T, mods ...func(*Options)) (*env, *countingStore) {
	t.Helper()
	var cs *countingStore
	e := newEnvWith(t, func(s store.Store) store.Store {
		cs = &countingStore{Store: s, ops: map[string]int{}}
		return cs
	}, mods...)
	return e, cs
}

// otherReplica is a second Handler on e's store: a writer behind the back
// of e.h's caches.
func (e *env) otherReplica() *Handler {
	return New(e.store, e.coord, livekitapi.New(e.fake.URL(), lkKey, lkSecret, 5*time.Second), Options{NameID: meetID, Subbucket: sub})
}

// active is an egress_updated ACTIVE; startedAt is part of the stored body,
// updatedAt only of its user metadata.
func active(t *testing.T, startedAt, updatedAt string) []byte {
	return egressEvent(t, "egress_updated", "EV_a"+updatedAt, eg{status: "EGRESS_ACTIVE", startedAt: startedAt, updatedAt: updatedAt})
}

func activeAt(startDate string) string {
	return `{"recordingId":"room-123--EG_abc123XYZ--a1b2c3d4e5","roomId":"room-123","status":"ACTIVE","filename":"room-123--a1b2c3d4e5.mp4","startDate":` + startDate + `}`
}

// TestRecordingCacheStoreOps: once a recording's state is known, the next
// update costs one conditional Put and no Get; what the cache cannot decide
// exactly (a stale event, an equal-rank update with a new body, a recording
// that is over) is read from the store first.
func TestRecordingCacheStoreOps(t *testing.T) {
	const s1, s2 = "1745318182000000000", "1745318183000000000"
	type step struct {
		body       []byte
		gets, puts int // of the recording metadata
		stale      bool
	}
	tests := []struct {
		name  string
		steps func(t *testing.T) []step
		want  string
	}{
		{"a recording moving forward", func(t *testing.T) []step {
			return []step{
				{startedEvent(t), 1, 1, false},
				{[]byte(updatedActiveBody), 0, 1, false},
				{endingEvent(t), 0, 1, false},
				{endedEvent(t), 0, 1, false},
				// A final state is not kept: a duplicate reads first.
				{endedEvent(t), 1, 1, false},
			}
		}, vectorInfo},
		{"equal-rank updates, the body unchanged", func(t *testing.T) []step {
			return []step{
				{active(t, s1, "1745318190000000001"), 1, 1, false},
				{active(t, s1, "1745318190000000002"), 0, 1, false},
				{active(t, s1, "1745318190000000003"), 0, 1, false},
			}
		}, activeAt("1745318182000")},
		{"a stale event is decided on the store, then the state read is used", func(t *testing.T) []step {
			return []step{
				{endingEvent(t), 1, 1, false},
				{[]byte(updatedActiveBody), 1, 0, true},
				{endedEvent(t), 0, 1, false},
			}
		}, vectorInfo},
		{"an equal-rank update with a new body reads first", func(t *testing.T) []step {
			return []step{
				{active(t, s1, "1745318190000000001"), 1, 1, false},
				{active(t, s2, "1745318190000000002"), 1, 1, false},
			}
		}, activeAt("1745318183000")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e, cs := newCountingEnv(t)
			e.put(roomKey, roomRecord(room, false, allPrefs))
			for i, st := range tc.steps(t) {
				ev, _ := e.mustHandle(st.body)
				wh, err := ev.LiveKit()
				if err != nil {
					t.Fatal(err)
				}
				if gets, puts := cs.take(mdKey); gets != st.gets || puts != st.puts {
					t.Errorf("step %d (%s %s): %d Gets and %d Puts of the metadata, want %d and %d",
						i, ev.Type, wh.EgressInfo.Status, gets, puts, st.gets, st.puts)
				}
				if ev.Meet.Stale != st.stale {
					t.Errorf("step %d: Stale = %v, want %v", i, ev.Meet.Stale, st.stale)
				}
			}
			if got := e.get(mdKey); string(got) != tc.want {
				t.Errorf("final metadata\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

// TestRecordingCacheConcurrentWriter: another replica writes the recording
// between two of our updates. Our cached state is then wrong; the write
// made from it must fail its condition, and the state read instead decides,
// so a newer or final state is never overwritten.
func TestRecordingCacheConcurrentWriter(t *testing.T) {
	const s1, s2 = "1745318182000000000", "1745318183000000000"
	tests := []struct {
		name                string
		ours, theirs, later func(t *testing.T) []byte
		stale               bool
		gets, puts          int // of our later update
		want                string
	}{
		{"they ended it: our later ENDING is stale",
			func(t *testing.T) []byte { return []byte(updatedActiveBody) }, endedEvent, endingEvent,
			true, 1, 1, vectorInfo},
		{"they moved it to ENDING: our COMPLETE still wins",
			func(t *testing.T) []byte { return []byte(updatedActiveBody) }, endingEvent, endedEvent,
			false, 1, 2, vectorInfo},
		{"they stored a newer state of equal rank",
			func(t *testing.T) []byte { return active(t, s1, "1745318190000000001") },
			func(t *testing.T) []byte { return active(t, s2, "1745318190000000003") },
			func(t *testing.T) []byte { return active(t, s1, "1745318190000000002") },
			true, 1, 1, activeAt("1745318183000")},
		// Their write leaves the body, so the ETag, as we cached it: only
		// reading the updatedAt in the metadata shows ours is older.
		{"they stored our body again with a later updatedAt",
			func(t *testing.T) []byte { return active(t, s1, "1745318190000000001") },
			func(t *testing.T) []byte { return active(t, s1, "1745318190000000003") },
			func(t *testing.T) []byte { return active(t, s2, "1745318190000000002") },
			true, 1, 0, activeAt("1745318182000")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e, cs := newCountingEnv(t)
			e.put(roomKey, roomRecord(room, false, allPrefs))
			e.mustHandle(tc.ours(t))
			if _, err := e.otherReplica().Handle(context.Background(), decode(t, tc.theirs(t)), discard); err != nil {
				t.Fatalf("the other replica's Handle: %v", err)
			}
			theirs := string(e.get(mdKey))
			cs.take(mdKey)
			sent := len(e.fake.SentData())
			ev, _ := e.mustHandle(tc.later(t))
			if gets, puts := cs.take(mdKey); gets != tc.gets || puts != tc.puts {
				t.Errorf("later update: %d Gets and %d Puts of the metadata, want %d and %d", gets, puts, tc.gets, tc.puts)
			}
			if ev.Meet.Stale != tc.stale {
				t.Errorf("Stale = %v, want %v", ev.Meet.Stale, tc.stale)
			}
			got := string(e.get(mdKey))
			if got != tc.want {
				t.Errorf("final metadata\n got %s\nwant %s", got, tc.want)
			}
			if tc.stale {
				if got != theirs {
					t.Errorf("a stale update changed the metadata\n%s\n→ %s", theirs, got)
				}
				if n := len(e.fake.SentData()); n != sent {
					t.Error("a stale update sent a data message")
				}
			}
		})
	}
}

// TestOwnershipCache: an egress event of a room whose Meet record was just
// found does not read it again within the TTL; after the TTL, after this
// replica deleted the room, with the cache disabled, or when the record was
// missing, the next event reads it.
func TestOwnershipCache(t *testing.T) {
	type step struct {
		before  func(*env) // run before the step's egress event
		advance time.Duration
		gets    int // of the room record, by the egress event
		owned   bool
	}
	deleteRoom := func(e *env) {
		e.t.Helper()
		_, derived := e.mustHandle(roomEvent(e.t, "room_finished", "EV_rf", room, meetMD, nil))
		if len(derived) != 1 || !derived[0].Meet.Deleted {
			e.t.Fatalf("room_finished did not delete the room: %+v", derived)
		}
	}
	createRecord := func(e *env) { e.put(roomKey, roomRecord(room, true, "")) }
	tests := []struct {
		name   string
		ttl    time.Duration // 0 leaves the default
		record bool
		steps  []step
	}{
		{"within the TTL, then past it", 0, true, []step{
			{nil, 0, 1, true},
			{nil, 5 * time.Second, 0, true},
			{nil, 4 * time.Second, 0, true},
			{nil, 2 * time.Second, 1, true},
			{nil, time.Second, 0, true},
		}},
		{"deleted by this replica: looked up again", 0, true, []step{
			{nil, 0, 1, true},
			{nil, time.Second, 0, true},
			{deleteRoom, time.Second, 1, false},
			{createRecord, time.Second, 1, true},
		}},
		{"a missing record is not remembered", 0, false, []step{
			{nil, 0, 1, false},
			{createRecord, time.Second, 1, true},
			{nil, time.Second, 0, true},
		}},
		{"a longer TTL", time.Minute, true, []step{
			{nil, 0, 1, true},
			{nil, 59 * time.Second, 0, true},
			{nil, time.Second, 1, true},
		}},
		{"disabled", -1, true, []step{
			{nil, 0, 1, true},
			{nil, time.Millisecond, 1, true},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			now := time.Unix(1745318200, 0)
			e, cs := newCountingEnv(t, func(o *Options) {
				o.Now = func() time.Time { return now }
				o.OwnershipCacheTTL = tc.ttl
			})
			// No LiveKit room: only the record makes the events Meet's.
			if tc.record {
				createRecord(e)
			}
			for i, st := range tc.steps {
				now = now.Add(st.advance)
				if st.before != nil {
					st.before(e)
				}
				cs.take(roomKey)
				body := egressEvent(t, "egress_updated", fmt.Sprintf("EV_%d", i),
					eg{status: "EGRESS_ACTIVE", startedAt: "1745318182000000000", updatedAt: strconv.Itoa(1745318190000000000 + i)})
				ev, _ := e.mustHandle(body)
				if gets, _ := cs.take(roomKey); gets != st.gets {
					t.Errorf("step %d: %d Gets of the room record, want %d", i, gets, st.gets)
				}
				if ev.Meet.Owned != st.owned {
					t.Errorf("step %d: owned = %v, want %v", i, ev.Meet.Owned, st.owned)
				}
			}
			if n := len(e.h.rooms.entries); tc.ttl < 0 && n != 0 {
				t.Errorf("disabled, yet %d rooms cached", n)
			}
		})
	}
}

// TestCache covers the bound and the rule that a forget outlives answers
// read before it.
func TestCache(t *testing.T) {
	t.Run("bounded", func(t *testing.T) {
		c := newCache[int, int](4)
		for i := range 10 {
			c.add(i, i, c.generation())
			if len(c.entries) > 4 {
				t.Fatalf("%d entries after %d adds, want at most 4", len(c.entries), i+1)
			}
			if v, ok := c.get(i); !ok || v != i {
				t.Errorf("get(%d) = %d, %v just after adding it", i, v, ok)
			}
		}
	})
	tests := []struct {
		name      string
		forgetKey string // forgotten between reading the generation and adding
		want      bool
	}{
		{"no forget in between: added", "", true},
		{"the key forgotten in between: refused", "room", false},
		{"another key forgotten in between: refused too", "other", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newCache[string, int](4)
			gen := c.generation()
			if tc.forgetKey != "" {
				c.forget(tc.forgetKey)
			}
			c.add("room", 1, gen)
			if _, ok := c.get("room"); ok != tc.want {
				t.Errorf("cached = %v, want %v", ok, tc.want)
			}
		})
	}
}
