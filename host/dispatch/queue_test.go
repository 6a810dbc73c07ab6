package dispatch

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/livekit/protocol/livekit"
	"github.com/prometheus/client_golang/prometheus/testutil"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/lkedge/lkedge/host/deliver"
	"github.com/lkedge/lkedge/host/event"
	"github.com/lkedge/lkedge/host/store"
)

// eventIn returns a copy of the test event name with its own id and room.
func eventIn(t *testing.T, name, id, room string) *event.Event {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("../../testdata/events", name+".webhook.json"))
	if err != nil {
		t.Fatal(err)
	}
	var wh livekit.WebhookEvent
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(b, &wh); err != nil {
		t.Fatal(err)
	}
	wh.Id = id
	switch {
	case wh.Room != nil:
		wh.Room.Name = room
	case wh.EgressInfo != nil:
		wh.EgressInfo.RoomName = room
	default:
		t.Fatalf("event %s has no room", name)
	}
	if b, err = protojson.Marshal(&wh); err != nil {
		t.Fatal(err)
	}
	ev, err := event.FromWebhook(b, time.UnixMilli(1745318190000))
	if err != nil {
		t.Fatal(err)
	}
	ev.Meet = &event.Meet{Owned: true, RoomID: room}
	return ev
}

// p99 is the 99th percentile of ds (nearest rank).
func p99(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[int(math.Ceil(0.99*float64(len(s))))-1]
}

// TestSlowPluginHoldsUpOnlyItself: a plugin that sleeps most of its time
// limit on every event delays neither the events only a fast plugin
// subscribed to nor the fast plugin's requests for the events both get:
// their p99 latency, sink to HTTP destination, stays within twice that of
// a quiet run (plus a margin for a shared 2-core machine). With one slot
// (the default on two cores) too: a sleeping call gives its slot up.
//
// The slow plugin sleeps, or spins (a call that holds a slot offers it at
// each look at the clock while others wait).
func TestSlowPluginHoldsUpOnlyItself(t *testing.T) {
	for _, slow := range []string{`sleep_ms: "800"`, `spin: "150000000"`} {
		for _, bound := range []int{1, 2} {
			name := fmt.Sprintf("%s/concurrency=%d", strings.Fields(slow)[0], bound)
			t.Run(name, func(t *testing.T) { slowPluginHoldsUpOnlyItself(t, bound, slow) })
		}
	}
}

func slowPluginHoldsUpOnlyItself(t *testing.T, bound int, slow string) {
	hook := newHookServer(t)
	dir := setupEmitter(t, `plugins:
  - name: slow
    wasm: emitter.wasm
    events: [egress_updated]
    config: {url: "`+hook.URL+`/slow", `+slow+`}
    limits: {timeout: 1s, instances: 1}
    allow: ["config:url"]
  - name: fast
    wasm: emitter.wasm
    events: ["*"]
    config: {url: "`+hook.URL+`/fast"}
    allow: ["config:url"]
`)
	out := openOutbox(t, dir, nil)
	opts := testOptions(dir, out, slog.New(slog.DiscardHandler))
	opts.Concurrency = bound
	d := newDispatcherOpts(t, opts)

	var mu sync.Mutex
	sent := map[string]time.Time{}
	// send hands each event to the sink from a goroutine of its own, as
	// the pipeline's workers do for different rooms.
	send := func(evs ...*event.Event) {
		for _, ev := range evs {
			mu.Lock()
			sent[ev.ID] = time.Now()
			mu.Unlock()
			go func() {
				if err := d.Handle(context.Background(), []*event.Event{ev}, slog.New(slog.DiscardHandler)); err != nil {
					t.Error(err)
				}
			}()
		}
	}
	// latencies waits for n requests to /fast beyond the first skip and
	// returns how long each took from its event's hand-off.
	latencies := func(skip, n int) []time.Duration {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			var fast []received
			for _, r := range hook.requests() {
				if r.path == "/fast" {
					fast = append(fast, r)
				}
			}
			if len(fast) >= skip+n {
				var ls []time.Duration
				mu.Lock()
				for _, r := range fast[skip:] {
					ls = append(ls, r.at.Sub(sent[r.body]))
				}
				mu.Unlock()
				return ls
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d fast requests arrived", len(fast)-skip, n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	const rounds = 20
	// Warm up: the first calls start instances.
	send(eventIn(t, "participant_joined", "EV_warm", "warm"))
	latencies(0, 1)
	for i := range rounds {
		send(eventIn(t, "participant_joined", fmt.Sprintf("EV_q%d", i), fmt.Sprintf("quiet-%d", i)))
		time.Sleep(40 * time.Millisecond)
	}
	quiet := latencies(1, rounds)
	for i := range rounds {
		room := fmt.Sprintf("busy-%d", i)
		send(eventIn(t, "egress_updated", fmt.Sprintf("EV_b%d", i), room),
			eventIn(t, "participant_joined", fmt.Sprintf("EV_p%d", i), room+"-other"))
		time.Sleep(40 * time.Millisecond)
	}
	busy := latencies(1+rounds, 2*rounds)
	q, b := p99(quiet), p99(busy)
	t.Logf("fast plugin p99: quiet %s, beside the slow plugin %s", q, b)
	if limit := 2*q + 100*time.Millisecond; b > limit {
		t.Errorf("fast plugin p99 beside the slow plugin %s, over 2 × quiet (%s) + 100ms", b, q)
	}
	if n := testutil.ToFloat64(d.m.queued.WithLabelValues("slow")); n < rounds/2 {
		t.Errorf("slow plugin has %v calls queued, want a backlog (the test did not load it)", n)
	}
}

// TestConcurrencyBound: however many plugins and instances there are, no
// more plugin calls run at once than Options.Concurrency, and the bound is
// reached.
func TestConcurrencyBound(t *testing.T) {
	for _, bound := range []int{1, 2} {
		t.Run(fmt.Sprint(bound), func(t *testing.T) {
			hook := newHookServer(t)
			var yaml strings.Builder
			yaml.WriteString("plugins:\n")
			// The calls spin (a sleeping call gives its slot up), long
			// enough for the gauge to see them at once: about 0.1 s each,
			// paused most of it (the plugin package's run stretch).
			const plugins, events, spin = 3, 8, 5_000_000
			for i := range plugins {
				fmt.Fprintf(&yaml, "  - name: p%d\n    wasm: emitter.wasm\n    events: [\"*\"]\n    config: {url: \"%s/p%d\", spin: \"%d\"}\n"+
					"    limits: {instances: 4, timeout: 10s}\n    allow: [\"config:url\"]\n", i, hook.URL, i, spin)
			}
			dir := setupEmitter(t, yaml.String())
			out := &outbox{}
			opts := testOptions(dir, out, slog.New(slog.DiscardHandler))
			opts.Concurrency = bound
			d := newDispatcherOpts(t, opts)
			// One call alone: what each call costs here.
			start := time.Now()
			if err := handle(t, d, eventIn(t, "participant_joined", "EV_alone", "alone")); err != nil {
				t.Fatal(err)
			}
			one := time.Since(start) / plugins
			out.take()

			stop := make(chan struct{})
			peak := make(chan float64)
			go func() {
				var m float64
				for {
					select {
					case <-stop:
						peak <- m
						return
					default:
					}
					m = max(m, testutil.ToFloat64(d.m.running))
					time.Sleep(200 * time.Microsecond)
				}
			}()
			start = time.Now()
			var evs []*event.Event
			for i := range events {
				evs = append(evs, eventIn(t, "participant_joined", fmt.Sprintf("EV_%d", i), fmt.Sprintf("room-%d", i)))
			}
			if err := handle(t, d, evs...); err != nil {
				t.Fatal(err)
			}
			elapsed := time.Since(start)
			close(stop)
			got := <-peak
			if n := len(out.take()); n != plugins*events {
				t.Fatalf("%d requests stored, want %d", n, plugins*events)
			}
			if got > float64(bound) || got < float64(bound) {
				t.Errorf("at most %v calls ran at once, want the bound %d reached and never passed", got, bound)
			}
			// One plugin has no more calls in flight than can run at once,
			// all but one slot beside other plugins: one each here, so one
			// instance each, though a call yields its slot every stretch.
			for i := range plugins {
				name := fmt.Sprintf("p%d", i)
				if n := d.current.Load().find(name).p.Started(); n != 1 {
					t.Errorf("plugin %s started %d instances, want 1", name, n)
				}
			}
			// No lower bound on the elapsed time: it assumed a call keeps a
			// core busy for all of its time, but a call running longer than
			// the plugin package's run stretch spends most of it paused
			// (holding its slot), and how the pauses of many calls fall
			// differs from one call alone. The sampled gauge above is the
			// check.
			t.Logf("one call %s; %d calls with %d at a time %s", one, plugins*events, bound, elapsed)
		})
	}
}

// slowEmitter sets up the emitter plugin in its mode, one instance taking
// 100 ms per call to hook, so that calls are still pending at a stop, and
// returns the outbox and the options of a dispatcher keeping its tasks in
// the outbox's file, as the service does.
func slowEmitter(t *testing.T, hook *hookServer, mode string) (*deliver.Outbox, Options) {
	t.Helper()
	dir := setupEmitter(t, `plugins:
  - name: hook
    wasm: emitter.wasm
    events: ["*"]
    config: {url: "`+hook.URL+`/hook", sleep_ms: "100", mode: "`+mode+`"}
    limits: {instances: 1}
    allow: ["config:url"]
`)
	out := openOutbox(t, dir, nil)
	opts := testOptions(dir, out, slog.New(slog.DiscardHandler))
	opts.Tasks, opts.DB = "", out.DB()
	return out, opts
}

// TestPendingCallsSurviveRestart: calls not yet made when the dispatcher
// stops are made after it starts again on the same files, each event's
// request is delivered once, and a room's requests keep their order.
func TestPendingCallsSurviveRestart(t *testing.T) {
	hook := newHookServer(t)
	out, opts := slowEmitter(t, hook, "")
	d, err := New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	var evs []*event.Event
	for i := range 8 {
		id := fmt.Sprintf("EV_%d", i)
		want = append(want, id)
		evs = append(evs, eventIn(t, "participant_joined", id, "one-room"))
	}
	if err := d.Handle(context.Background(), evs, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	hook.waitFor(t, 1, 10*time.Second)
	if err := d.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	before := len(hook.requests())
	if before >= len(evs) {
		t.Fatalf("all %d calls were made before the stop; the test proves nothing", before)
	}

	var logs syncBuffer
	opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	d = newDispatcherOpts(t, opts)
	// A replay of the same events after the restart adds no second call.
	if err := handle(t, d, evs...); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := out.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range hook.requests() {
		got = append(got, r.body)
	}
	if !slices.Equal(got, want) {
		t.Errorf("delivered %v, want each event once, in order: %v", got, want)
	}
	if !strings.Contains(logs.String(), "resuming plugin calls pending before the last stop") {
		t.Errorf("no log line about resumed calls:\n%s", logs.String())
	}
}

// TestResumedCallGetsTheEvent: a call resumed after a restart gets the
// event byte for byte as the call before the stop would have, here with
// <, > and & in it, which OpenVidu Meet's recordings carry unescaped and
// sign as they are.
func TestResumedCallGetsTheEvent(t *testing.T) {
	hook := newHookServer(t)
	out, opts := slowEmitter(t, hook, "event")
	d := newDispatcherOpts(t, opts)
	var evs []*event.Event
	want := map[string]string{}
	for i := range 6 {
		ev := eventIn(t, "participant_joined", fmt.Sprintf("EV_%d", i), "room <a> & <b>")
		evs = append(evs, ev)
		b, err := ev.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "room <a> & <b>") {
			t.Fatalf("the event's JSON escapes the room name: %s", b)
		}
		want[ev.ID] = string(b)
	}
	if err := d.Handle(context.Background(), evs, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	hook.waitFor(t, 1, 10*time.Second)
	if err := d.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(hook.requests()) >= len(evs) {
		t.Fatal("every call was made before the stop; the test proves nothing")
	}
	d = newDispatcherOpts(t, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	if err := out.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	got := hook.requests()
	if len(got) != len(evs) {
		t.Fatalf("%d requests, want %d", len(got), len(evs))
	}
	for i, r := range got {
		var ev struct{ ID string }
		if err := json.Unmarshal([]byte(r.body), &ev); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if r.body != want[ev.ID] {
			t.Errorf("request %d (%s) got the event as\n%s\nwant\n%s", i, ev.ID, r.body, want[ev.ID])
		}
	}
}

// TestRemovedPluginDropsItsCalls: a plugin removed by a reload has its
// pending calls dropped with a log line, and is not called again.
func TestRemovedPluginDropsItsCalls(t *testing.T) {
	hook := newHookServer(t)
	conf := `plugins:
  - name: stays
    wasm: emitter.wasm
    events: ["*"]
    config: {url: "` + hook.URL + `/stays"}
    allow: ["config:url"]
`
	dir := setupEmitter(t, conf+`  - name: goes
    wasm: emitter.wasm
    events: ["*"]
    config: {url: "`+hook.URL+`/goes", sleep_ms: "200"}
    limits: {instances: 1}
    allow: ["config:url"]
`)
	var logs syncBuffer
	d := newDispatcherLog(t, dir, &outbox{}, slog.New(slog.NewTextHandler(&logs, nil)))
	var evs []*event.Event
	for i := range 6 {
		evs = append(evs, eventIn(t, "participant_joined", fmt.Sprintf("EV_%d", i), "room"))
	}
	if err := d.Handle(context.Background(), evs, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "plugins.yaml"), conf)
	if err := d.reload(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	line := logLine(logs.String(), "plugin removed; its pending calls are dropped")
	if !strings.Contains(line, "plugin=goes") || !strings.Contains(line, "tasks=5") {
		t.Errorf("want a line dropping the 5 calls of goes not running; log:\n%s", logs.String())
	}
	// The call running at the reload ends on the old version or, if it had
	// not started, is dropped when its turn comes.
	dropped := testutil.ToFloat64(d.m.tasks.WithLabelValues("goes", "dropped"))
	done := testutil.ToFloat64(d.m.tasks.WithLabelValues("goes", "done"))
	if dropped < 5 || dropped+done != 6 {
		t.Errorf("lkedge_plugin_tasks_total{plugin=goes}: %v dropped, %v done; want 5 or 6 dropped, the rest done", dropped, done)
	}
}

// TestQueueBound: a plugin that cannot keep up stops getting events past
// Options.MaxQueued pending calls, with a log line and a count naming it;
// the other plugin gets every event.
func TestQueueBound(t *testing.T) {
	dir := setupEmitter(t, `plugins:
  - name: stuck
    wasm: emitter.wasm
    events: ["*"]
    config: {url: "https://hooks.example.com/stuck", sleep_ms: "1000"}
    limits: {instances: 1, timeout: 2s}
    allow: ["config:url"]
  - name: fine
    wasm: emitter.wasm
    events: ["*"]
    config: {url: "https://hooks.example.com/fine"}
    allow: ["config:url"]
`)
	out := &outbox{}
	var logs syncBuffer
	opts := testOptions(dir, out, slog.New(slog.NewTextHandler(&logs, nil)))
	opts.MaxQueued = 3
	opts.Concurrency = 2 // so the sleeping plugin cannot hold the only slot
	d := newDispatcherOpts(t, opts)
	// One event at a time, as the pipeline hands them over; the fast
	// plugin's queue empties in between, the stuck one's does not.
	for i := range 7 {
		ev := eventIn(t, "participant_joined", fmt.Sprintf("EV_%d", i), "room")
		if err := d.Handle(context.Background(), []*event.Event{ev}, slog.New(slog.NewTextHandler(&logs, nil))); err != nil {
			t.Fatal(err)
		}
		for testutil.ToFloat64(d.m.queued.WithLabelValues("fine")) > 0 {
			time.Sleep(time.Millisecond)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.WaitIdle(ctx); err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, x := range out.take() {
		count[x.Plugin]++
	}
	if count["fine"] != 7 || count["stuck"] != 3 {
		t.Errorf("stored %v, want fine 7 and stuck 3", count)
	}
	if got := strings.Count(logs.String(), "plugin's queue is full; it does not get this event"); got != 4 {
		t.Errorf("%d lines about a full queue, want 4:\n%s", got, logs.String())
	}
	if !strings.Contains(logLine(logs.String(), "queue is full"), "plugin=stuck") {
		t.Errorf("the full-queue line does not name the plugin:\n%s", logs.String())
	}
	if got := testutil.ToFloat64(d.m.tasks.WithLabelValues("stuck", "refused")); got != 4 {
		t.Errorf("lkedge_plugin_tasks_total{plugin=stuck,outcome=refused} = %v, want 4", got)
	}
}

// TestHoldKeepsTheRoomInOrder: under failure: hold a failing call is tried
// again while the plugin's later calls on the same room wait behind it and
// its calls on other rooms go on; once it succeeds the room's requests are
// stored in order.
func TestHoldKeepsTheRoomInOrder(t *testing.T) {
	dir := setupEmitter(t, `plugins:
  - name: ordered
    wasm: emitter.wasm
    events: ["*"]
    config:
      url: "https://hooks.example.com/x"
      fail_id: {store: prefs.json, field: fail, default: ""}
    allow: ["config:url"]
    failure: hold
`)
	st, err := store.NewFile(filepath.Join(dir, "store"), "openvidu")
	if err != nil {
		t.Fatal(err)
	}
	setFail := func(id string) {
		t.Helper()
		if _, err := st.Put(context.Background(), "openvidu-meet/prefs.json", []byte(`{"fail":"`+id+`"}`), store.PutOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	setFail("EV_a1")
	out := &outbox{}
	var logs syncBuffer
	opts := testOptions(dir, out, slog.New(slog.NewTextHandler(&logs, nil)))
	opts.Store, opts.StorePrefix, opts.StoreTTL = st, "openvidu-meet/", 5*time.Millisecond
	opts.HoldAttempts, opts.HoldBackoff = 50, 20*time.Millisecond
	d := newDispatcherOpts(t, opts)
	evs := []*event.Event{
		eventIn(t, "participant_joined", "EV_a1", "room-a"),
		eventIn(t, "participant_joined", "EV_a2", "room-a"),
		eventIn(t, "participant_joined", "EV_b1", "room-b"),
	}
	if err := d.Handle(context.Background(), evs, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	var stored []string
	waitStored := func(n int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for len(stored) < n {
			for _, x := range out.take() {
				stored = append(stored, x.EventID)
			}
			if time.Now().After(deadline) {
				t.Fatalf("stored %v, want %d requests", stored, n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitStored(1)
	waitLog(t, &logs, "attempt=2 of=50")
	if !slices.Equal(stored, []string{"EV_b1"}) {
		t.Fatalf("while EV_a1 fails, stored %v, want only the other room's EV_b1", stored)
	}
	setFail("")
	waitStored(3)
	if !slices.Equal(stored, []string{"EV_b1", "EV_a1", "EV_a2"}) {
		t.Errorf("stored %v, want EV_b1, then room-a in order", stored)
	}
	if got := testutil.ToFloat64(d.m.failedTasks); got != 0 {
		t.Errorf("lkedge_plugin_tasks_failed = %v, want 0: the call succeeded in the end", got)
	}
}

// TestSinkTakesFinishedTasksAlong: the sink's commit of new tasks also
// removes the tasks of the calls finished since the last commit, so under
// load a finished call costs no commit of its own.
func TestSinkTakesFinishedTasksAlong(t *testing.T) {
	hook := newHookServer(t)
	dir := setupEmitter(t, "plugins:\n  - name: hook\n    wasm: emitter.wasm\n    events: [\"*\"]\n"+
		"    config: {url: \""+hook.URL+"/hook\"}\n    allow: [\"config:url\"]\n")
	opts := testOptions(dir, &outbox{}, slog.New(slog.DiscardHandler))
	opts.FinishedInterval = time.Hour // only a commit made anyway removes them
	d := newDispatcherOpts(t, opts)
	inFile := func() (ids []string) {
		t.Helper()
		err := d.db.View(func(tx *bolt.Tx) error {
			return tx.Bucket(bucketTasks).ForEach(func(_, v []byte) error {
				var rec struct {
					EventID string `json:"event_id"`
				}
				err := json.Unmarshal(v, &rec)
				ids = append(ids, rec.EventID)
				return err
			})
		})
		if err != nil {
			t.Fatal(err)
		}
		return ids
	}
	if err := handle(t, d, eventIn(t, "participant_joined", "EV_first", "room-a")); err != nil {
		t.Fatal(err)
	}
	if got := inFile(); !slices.Equal(got, []string{"EV_first"}) {
		t.Fatalf("tasks in the file after the first call: %q, want its finished task still there", got)
	}
	if err := handle(t, d, eventIn(t, "participant_joined", "EV_second", "room-b")); err != nil {
		t.Fatal(err)
	}
	if got := inFile(); !slices.Equal(got, []string{"EV_second"}) {
		t.Errorf("tasks in the file after the second event: %q, want only the second's (the first's removed by its commit)", got)
	}
}
