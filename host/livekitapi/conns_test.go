package livekitapi

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestConnectionsReused: calls made at once, as the pipeline's workers
// make them, keep their connections for the next calls. With Go's default
// transport, which keeps two idle connections per host, every call past
// two dialed anew.
func TestConnectionsReused(t *testing.T) {
	const callers, rounds = 12, 5
	// The server answers a round's calls only once all of them arrived, so
	// that they are in flight at once.
	var mu sync.Mutex
	arrived, release := 0, make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		arrived++
		ch := release
		if arrived == callers {
			arrived, release = 0, make(chan struct{})
			close(ch)
		}
		mu.Unlock()
		<-ch
		w.Header().Set("Content-Type", "application/protobuf")
		w.WriteHeader(http.StatusOK) // an empty ListRoomsResponse
	}))
	defer srv.Close()
	c := New(srv.URL, "key", "secret", 5*time.Second)
	tr := c.breaker.base.(*http.Transport)
	var dials atomic.Int64
	dial := tr.DialContext
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return dial(ctx, network, addr)
	}
	for range rounds {
		var wg sync.WaitGroup
		for range callers {
			wg.Go(func() {
				if _, err := c.GetRoom(context.Background(), "room"); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	n := dials.Load()
	t.Logf("%d rounds of %d calls at once: %d connections", rounds, callers, n)
	if n > callers {
		t.Errorf("%d connections for %d rounds of %d calls at once: connections are not kept", n, rounds, callers)
	}
}
