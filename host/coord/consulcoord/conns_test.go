package consulcoord

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/lkedge/lkedge/host/internal/testserver"
)

// TestConnectionsReused: with many requests to Consul in flight at once,
// as a replica under load has (turns waiting in blocking queries, woken
// together), the default transport keeps its connections. With Go's default transport, which
// keeps two idle connections per host, every request past two closed its
// connection and the next one dialed anew: about one new connection per
// event, with a TIME_WAIT socket each.
func TestConnectionsReused(t *testing.T) {
	agent := testserver.StartConsul(t)
	tr := pooledTransport()
	var dials atomic.Int64
	dial := tr.DialContext
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return dial(ctx, network, addr)
	}
	c := newCoord(t, agent.Addr, func(o *Options) { o.Transport = tr })
	ctx := context.Background()
	// A room's events admitted in order, then all waiting for their turns
	// at once: each done wakes every waiting blocking query together, as
	// on a busy replica.
	const workers, rounds = 12, 5
	start := dials.Load()
	for r := range rounds {
		key := fmt.Sprintf("room:reuse-%d", r)
		var wg sync.WaitGroup
		for i := range workers {
			tk, err := c.Admit(ctx, fmt.Sprintf("EV_reuse_%d_%d", r, i), key, "reuse")
			if err != nil {
				t.Fatal(err)
			}
			wg.Go(func() {
				tu, err := c.Turn(ctx, key, tk)
				if err == nil {
					err = tu.Done(ctx)
				}
				if err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	n := dials.Load() - start
	t.Logf("%d events, %d waiting at once: %d new connections", workers*rounds, workers, n)
	if n > workers {
		t.Errorf("%d new connections to Consul for %d events, %d waiting at once: connections are not kept", n, workers*rounds, workers)
	}
}
