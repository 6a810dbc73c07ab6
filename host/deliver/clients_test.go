package deliver

import (
	"fmt"
	"testing"
	"time"
)

// TestClientsBounded: every distinct allow-list gets its own client and
// connection pool, but only Options.Clients of them are kept, so a stream
// of deliveries with ever-new allow-lists (a store-sourced URL that
// changes, many plugins) cannot pile up clients; a list whose client was
// dropped still delivers, with a new one.
func TestClientsBounded(t *testing.T) {
	for _, tc := range []struct {
		lists, clients, wantKept int
	}{
		{lists: 12, clients: 3, wantKept: 3},
		{lists: 5, clients: 1, wantKept: 1},
		{lists: 2, clients: 4, wantKept: 2},
	} {
		t.Run(fmt.Sprintf("%d lists, %d clients", tc.lists, tc.clients), func(t *testing.T) {
			s := okSink(t)
			opts := testOptions()
			opts.Clients = tc.clients
			o := openOutbox(t, opts)
			start(t, o)
			send := func(id string, list int) {
				t.Helper()
				d := s.delivery(id, "r")
				// Each allow-list differs by an entry that is never used.
				d.Policy.Allow = append(d.Policy.Allow, fmt.Sprintf("https://unused-%d.example.com", list))
				enqueue(t, o, d)
				waitIdle(t, o, 5*time.Second)
			}
			for i := range tc.lists {
				send(fmt.Sprintf("d%d", i), i)
			}
			if got := o.clients.Len(); got != tc.wantKept {
				t.Errorf("%d clients kept, want %d", got, tc.wantKept)
			}
			send("again", 0)
			if got := len(s.all()); got != tc.lists+1 {
				t.Fatalf("%d requests arrived, want %d", got, tc.lists+1)
			}
			if got := o.clients.Len(); got != tc.wantKept {
				t.Errorf("%d clients kept after reusing the first list, want %d", got, tc.wantKept)
			}
		})
	}
}
