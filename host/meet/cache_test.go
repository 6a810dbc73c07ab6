package meet

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

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
