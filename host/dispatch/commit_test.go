package dispatch

import (
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	bolt "go.etcd.io/bbolt"

	"github.com/lkedge/lkedge/host/deliver"
	"github.com/lkedge/lkedge/host/event"
)

// sharedOutbox opens an outbox that is not running (its deliveries stay
// pending) and a dispatcher keeping its tasks in the outbox's file, as the
// service does, with bbolt's wait for company set to wait. The plugin
// "hook" gets config's entries beside its url and the plugin lines more;
// tweak, if given, changes the dispatcher's options.
func sharedOutbox(t *testing.T, wait time.Duration, config, more string, tweak func(*Options)) (*deliver.Outbox, *Dispatcher) {
	t.Helper()
	hook := newHookServer(t)
	dir := setupEmitter(t, "plugins:\n  - name: hook\n    wasm: emitter.wasm\n    events: [\"*\"]\n"+
		"    config: {url: \""+hook.URL+"/hook\""+config+"}\n    allow: [\"config:url\"]\n"+more)
	out, err := deliver.Open(filepath.Join(dir, "outbox.db"), deliver.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { out.Close() })
	opts := testOptions(dir, out, slog.New(slog.DiscardHandler))
	opts.Tasks, opts.DB = "", out.DB()
	if tweak != nil {
		tweak(&opts)
	}
	d := newDispatcherOpts(t, opts)
	// Warm the plugin, so that the calls below are quick.
	if err := handle(t, d, eventIn(t, "participant_joined", "EV_warm", "room-warm")); err != nil {
		t.Fatal(err)
	}
	out.DB().MaxBatchDelay = wait
	return out, d
}

// TestCallSharesTheTaskCommit: a plugin's call starts while the sink's
// write of its task waits for company, so the call's request is stored by
// that same commit instead of one of its own after it. With a long wait
// for company, the request is pending as soon as the sink returns; were the
// call started after the task's commit, it would take another whole wait.
func TestCallSharesTheTaskCommit(t *testing.T) {
	const wait = time.Second
	out, d := sharedOutbox(t, wait, "", "", nil)
	before := out.Pending()
	if err := d.Handle(context.Background(), []*event.Event{eventIn(t, "participant_joined", "EV_shared", "room-a")}, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	returned := time.Now()
	for out.Pending() == before && time.Since(returned) < 3*wait {
		time.Sleep(time.Millisecond)
	}
	if got := time.Since(returned); got > wait/2 {
		t.Errorf("the call's request was stored %v after the sink's commit; want it in that commit", got)
	}
}

// TestUnstoredTaskRunsOnce: a task whose write finds it already stored (an
// event replayed while its stored task had not been seen) may already run
// when the write says so. Its run counts for nothing: it is not run again,
// and it does not remove the stored task's index entry, which its own
// stored copy still needs.
func TestUnstoredTaskRunsOnce(t *testing.T) {
	out, d := sharedOutbox(t, 100*time.Millisecond, "", "", nil)
	ev := eventIn(t, "participant_joined", "EV_twice", "room-b")
	id := (&task{rec: taskRecord{EventID: ev.ID, Plugin: "hook"}}).id()
	if err := d.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketTaskIDs).Put(id, u64(1<<40)) }); err != nil {
		t.Fatal(err)
	}
	before := out.Pending()
	if err := handle(t, d, ev); err != nil {
		t.Fatal(err)
	}
	d.flushFinished()
	if n := d.Pending(); n != 0 {
		t.Errorf("%d calls still pending", n)
	}
	if got := out.Pending() - before; got != 1 {
		t.Errorf("%d requests stored for the event, want 1 (its call made once)", got)
	}
	err := d.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketTaskIDs).Get(id) == nil {
			t.Error("the stored task's index entry was removed by the unstored copy's run")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestFailedCallBeforeItsTaskIsStored: a call that fails, and is given up
// under failure: hold, while the sink's write of its task still waits for
// company. The write stores the task as the sink received it (the worker
// meanwhile counts the attempt on its own copy), and the task ends up in
// the failed tasks only, once.
func TestFailedCallBeforeItsTaskIsStored(t *testing.T) {
	_, d := sharedOutbox(t, 300*time.Millisecond, ", fail_id: EV_fails", "    failure: hold\n",
		func(o *Options) { o.HoldAttempts = 1 })
	if err := handle(t, d, eventIn(t, "participant_joined", "EV_fails", "room-f")); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(d.m.failedTasks); got != 1 {
		t.Errorf("lkedge_plugin_tasks_failed = %v, want 1", got)
	}
	count := func(bucket []byte) (n int) {
		t.Helper()
		err := d.db.View(func(tx *bolt.Tx) error {
			return tx.Bucket(bucket).ForEach(func(_, v []byte) error {
				var rec taskRecord
				if err := json.Unmarshal(v, &rec); err != nil {
					return err
				}
				if rec.EventID == "EV_fails" {
					n++
				}
				return nil
			})
		})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(bucketTasks); n != 0 {
		t.Errorf("%d tasks of EV_fails still pending in the file, want 0", n)
	}
	if n := count(bucketFailed); n != 1 {
		t.Errorf("%d failed tasks of EV_fails in the file, want 1", n)
	}
}
