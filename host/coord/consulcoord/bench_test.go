package consulcoord

import (
	"context"
	"net/http"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/lkedge/lkedge/host/coord"
	"github.com/lkedge/lkedge/host/internal/testserver"
)

// countingTransport counts the HTTP requests to Consul.
type countingTransport struct{ n atomic.Int64 }

func (t *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	t.n.Add(1)
	return http.DefaultTransport.RoundTrip(r)
}

var runs atomic.Int64

// BenchmarkAdmitTurn is the per-event coordination cost (admission with
// de-duplication, the turn, and the done) against a real agent, next to the
// in-process baseline, one event at a time: "sameRoom" reuses one room's
// key, "newRoom" a new key per event.
// round-trips/op counts the HTTP requests to Consul.
func BenchmarkAdmitTurn(b *testing.B) {
	agent := testserver.StartConsul(b)
	ctx := context.Background()
	run := func(b *testing.B, c coord.Coordinator, count *countingTransport, room func(i int) string) {
		start := int64(0)
		if count != nil {
			start = count.n.Load()
		}
		// Fresh event ids per run: a repeated id is a replay, which costs more.
		run := strconv.Itoa(int(runs.Add(1)))
		for i := 0; b.Loop(); i++ {
			key := room(i)
			tk, err := c.Admit(ctx, "EV_"+run+"_"+strconv.Itoa(i), key, "bench/"+strconv.Itoa(i))
			if err != nil {
				b.Fatal(err)
			}
			tu, err := c.Turn(ctx, key, tk)
			if err != nil {
				b.Fatal(err)
			}
			if err := tu.Done(ctx); err != nil {
				b.Fatal(err)
			}
		}
		if count != nil {
			b.ReportMetric(float64(count.n.Load()-start)/float64(b.N), "round-trips/op")
		}
	}
	rooms := map[string]func(int) string{
		"sameRoom": func(int) string { return "room:bench" },
		"newRoom":  func(i int) string { return "room:bench-" + strconv.Itoa(i) },
	}
	for _, name := range []string{"sameRoom", "newRoom"} {
		b.Run("inproc/"+name, func(b *testing.B) {
			run(b, coord.NewInProcess(nil), nil, rooms[name])
		})
		b.Run("consul/"+name, func(b *testing.B) {
			count := &countingTransport{}
			c := newCoord(b, agent.Addr, func(o *Options) { o.Transport = count })
			run(b, c, count, rooms[name])
		})
	}
}
