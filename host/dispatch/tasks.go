package dispatch

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/lkedge/lkedge/host/deliver"
	"github.com/lkedge/lkedge/host/internal/reuse"
	"github.com/lkedge/lkedge/host/plugin"
	"github.com/lkedge/lkedge/host/pluginconf"
)

// The task buckets, beside the outbox's in its file. A task is one plugin
// call owed on one event; its key is a sequence number given in the order
// the sink received the events, so a restart rebuilds every (plugin, order
// key) queue in that order.
var (
	bucketTasks   = []byte("plugin_tasks")    // seq (8 bytes BE) -> taskRecord
	bucketTaskIDs = []byte("plugin_task_ids") // event id, NUL, plugin -> seq
	bucketFailed  = []byte("plugin_failed")   // seq -> taskRecord, given up under failure: hold
)

// taskRecord is what is stored for a task.
type taskRecord struct {
	Plugin  string `json:"plugin"`
	EventID string `json:"event_id"`
	// Key is the event's order key: a plugin's calls on one key run one at
	// a time, in order.
	Key       string `json:"key"`
	Attempts  int    `json:"attempts,omitempty"`
	LastError string `json:"last_error,omitempty"`
	// Body is the event as plugins read it: JSON, stored as it is (encode).
	Body json.RawMessage `json:"body,omitempty"`
}

// encode is the record as JSON, with Body copied byte for byte.
// json.Marshal would rewrite it: it compacts a json.RawMessage and escapes
// its <, > and &, so a task read back after a restart would hand its plugin
// other bytes than the event had (meet.recording must reach
// openvidu-webhook as stored), and it costs a pass over every byte of
// every event a plugin gets.
func (r *taskRecord) encode() ([]byte, error) {
	head := *r
	head.Body = nil
	b, err := json.Marshal(&head)
	if err != nil || len(r.Body) == 0 {
		return b, err
	}
	b = append(b[:len(b)-1], `,"body":`...)
	b = append(b, r.Body...)
	return append(b, '}'), nil
}

// task is a stored task and its place in memory.
type task struct {
	seq uint64
	rec taskRecord
	// durable: its write is committed. It may run before: its call's
	// requests then go into the outbox in the same commit as the task
	// (bbolt's batch) instead of in one of their own.
	durable bool
	dup     bool // already stored (a replayed event): not stored again
	taken   bool // a worker runs it, and removes it (under d.mu)
	// stored is closed once add has its write's outcome; nil for a task
	// read from the file. unstored (set before stored is closed): the
	// write failed or found the task already stored, so this copy's run
	// counts for nothing.
	stored   chan struct{}
	unstored bool
	// enc is its record as add stores it, encoded before a worker may
	// change the record (attempts, last error); nil once stored.
	enc []byte
}

func (t *task) id() []byte { return []byte(t.rec.EventID + "\x00" + t.rec.Plugin) }

// queue is one plugin's pending tasks, by order key.
type queue struct {
	name    string
	keys    map[string]*keyQueue
	ready   []*keyQueue // keys whose first task may run now, oldest first
	running int         // workers on this plugin's keys
	n       int         // tasks, running ones included
}

// keyQueue is the tasks of one plugin on one order key, in order. Only its
// first task runs, and only while the key is scheduled.
type keyQueue struct {
	key   string
	tasks []*task
	// scheduled: in ready, running, or waiting for a retry.
	scheduled bool
}

// outcome is how a task run ended.
type outcome int

const (
	taskDone    outcome = iota // its requests are in the outbox
	taskSkipped                // the plugin failed under failure: skip
	taskFailed                 // given up under failure: hold; kept in failed
	taskDropped                // its plugin is no longer loaded
	taskRetry                  // tried again after a wait
	taskAborted                // shutdown: it stays stored for the next start
)

var outcomeNames = map[outcome]string{taskDone: "done", taskSkipped: "skipped", taskFailed: "failed", taskDropped: "dropped", taskRetry: "retried"}

// openTasks opens the task file (Options.DB, or the file Options.Tasks)
// and queues what it holds, dropping the tasks of plugins that are no
// longer loaded.
func (d *Dispatcher) openTasks() error {
	db, path := d.opts.DB, d.opts.Tasks
	if db == nil {
		var err error
		db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
		if err != nil {
			if errors.Is(err, berrors.ErrTimeout) {
				return fmt.Errorf("plugin task file %s is in use by another process: %w", path, err)
			}
			return fmt.Errorf("open plugin task file %s: %w", path, err)
		}
		// As the outbox: concurrent sinks and finished tasks share a commit.
		db.MaxBatchDelay = 3 * time.Millisecond
		d.ownDB = true
	}
	d.db = db
	path = db.Path()
	var loaded []*task
	err := db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketTasks, bucketTaskIDs, bucketFailed} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return fmt.Errorf("bucket %s: %w", b, err)
			}
		}
		d.nFailed = tx.Bucket(bucketFailed).Stats().KeyN
		if k, _ := tx.Bucket(bucketFailed).Cursor().Last(); len(k) == 8 {
			d.seq = binary.BigEndian.Uint64(k)
		}
		return tx.Bucket(bucketTasks).ForEach(func(k, v []byte) error {
			t := &task{durable: true}
			if len(k) != 8 || json.Unmarshal(v, &t.rec) != nil {
				d.log.Error("plugin task file: undecodable task left in place", "key", fmt.Sprintf("%x", k))
				return nil
			}
			t.seq = binary.BigEndian.Uint64(k)
			d.seq = max(d.seq, t.seq)
			loaded = append(loaded, t)
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("plugin task file %s: %w", path, err)
	}
	d.m.failedTasks.Set(float64(d.nFailed))
	d.mu.Lock()
	for _, t := range loaded {
		d.appendLocked(t)
	}
	d.mu.Unlock()
	d.dropRemoved()
	d.mu.Lock()
	for _, q := range d.queues {
		for _, kq := range q.keys {
			q.kick(kq)
		}
	}
	d.pumpLocked()
	d.mu.Unlock()
	if len(loaded) > 0 {
		d.log.Info("resuming plugin calls pending before the last stop", "tasks", len(loaded))
	}
	return nil
}

// queueLocked returns the queue of plugin name, making it if needed.
func (d *Dispatcher) queueLocked(name string) *queue {
	q := d.queues[name]
	if q == nil {
		q = &queue{name: name, keys: map[string]*keyQueue{}}
		d.queues[name] = q
	}
	return q
}

// appendLocked puts t at the end of its key's queue.
func (d *Dispatcher) appendLocked(t *task) {
	q := d.queueLocked(t.rec.Plugin)
	kq := q.keys[t.rec.Key]
	if kq == nil {
		kq = &keyQueue{key: t.rec.Key}
		q.keys[t.rec.Key] = kq
	}
	kq.tasks = append(kq.tasks, t)
	q.n++
	d.pending++
	d.byEvent[t.rec.EventID]++
	d.m.queued.WithLabelValues(q.name).Set(float64(q.n))
}

// removeLocked takes t out of its key's queue.
func (d *Dispatcher) removeLocked(t *task) {
	q := d.queues[t.rec.Plugin]
	kq := q.keys[t.rec.Key]
	kq.tasks = slices.DeleteFunc(kq.tasks, func(x *task) bool { return x == t })
	if len(kq.tasks) == 0 && !kq.scheduled {
		delete(q.keys, kq.key)
	}
	q.n--
	d.pending--
	if d.byEvent[t.rec.EventID]--; d.byEvent[t.rec.EventID] <= 0 {
		delete(d.byEvent, t.rec.EventID)
	}
	close(d.removed)
	d.removed = make(chan struct{})
	d.m.queued.WithLabelValues(q.name).Set(float64(q.n))
	if d.pending == 0 {
		close(d.idle)
		d.idle = make(chan struct{})
	}
}

// kick schedules kq if its first task may run.
func (q *queue) kick(kq *keyQueue) {
	if !kq.scheduled && len(kq.tasks) > 0 {
		kq.scheduled = true
		q.ready = append(q.ready, kq)
	}
}

// add stores ts, each plugin's calls on the events, in one durable write
// and queues them. A plugin whose queue is full does not get the event: it
// is the only one to lose it, and says so in the log.
func (d *Dispatcher) add(ts []*task, log *slog.Logger) error {
	for _, t := range ts {
		v, err := t.rec.encode()
		if err != nil {
			return fmt.Errorf("encode task %s: %w", t.id(), err)
		}
		t.enc = v
	}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return errors.New("plugin stage closed")
	}
	kept := ts[:0]
	for _, t := range ts {
		if q := d.queueLocked(t.rec.Plugin); q.n >= d.opts.MaxQueued {
			log.Error("plugin's queue is full; it does not get this event", "plugin", t.rec.Plugin, "queued", q.n)
			d.m.tasks.WithLabelValues(t.rec.Plugin, "refused").Inc()
			continue
		}
		d.seq++
		t.seq = d.seq
		d.appendLocked(t)
		kept = append(kept, t)
	}
	ts = kept
	// The calls may start before the write below commits: a call done
	// within bbolt's wait for company stores its requests in the same
	// commit. Should the write fail, the event's retry stores the task
	// again and calls again, and the outbox keeps the first request of
	// each id: at least once, as after a crash.
	for _, t := range ts {
		t.stored = make(chan struct{})
		q := d.queues[t.rec.Plugin]
		q.kick(q.keys[t.rec.Key])
	}
	d.pumpLocked()
	d.mu.Unlock()
	if len(ts) == 0 {
		return nil
	}
	finished := d.takeFinished()
	err := d.db.Batch(func(tx *bolt.Tx) error {
		tasks, ids := tx.Bucket(bucketTasks), tx.Bucket(bucketTaskIDs)
		for _, t := range ts {
			// Batch may run this twice: decide afresh each time.
			t.dup = false
			if ids.Get(t.id()) != nil {
				t.dup = true
				continue
			}
			if err := tasks.Put(u64(t.seq), t.enc); err != nil {
				return fmt.Errorf("store task %s: %w", t.id(), err)
			}
			if err := ids.Put(t.id(), u64(t.seq)); err != nil {
				return fmt.Errorf("index task %s: %w", t.id(), err)
			}
		}
		// After the puts, so that a call finished a moment ago still
		// counts as known to them, as it would before a separate flush.
		return deleteTasks(tx, finished)
	})
	if err != nil {
		d.returnFinished(finished)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, t := range ts {
		t.enc = nil
		switch {
		case err == nil && !t.dup:
			t.durable = true
		case t.taken:
			// Its worker removes it. Requests it stored stay: their ids
			// are the ones the event's retry, or the stored copy, asks
			// for again, so the outbox keeps them once.
			t.unstored = true
		default:
			d.removeLocked(t)
		}
		close(t.stored)
	}
	// A removed task may have been the one the next stored task of its
	// key waited for.
	for _, t := range ts {
		q := d.queues[t.rec.Plugin]
		if kq := q.keys[t.rec.Key]; kq != nil {
			q.kick(kq)
		}
	}
	if err != nil {
		return fmt.Errorf("store %d plugin calls: %w", len(ts), err)
	}
	d.pumpLocked()
	return nil
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func putTask(b *bolt.Bucket, t *task) error {
	v, err := t.rec.encode()
	if err != nil {
		return fmt.Errorf("encode task %s: %w", t.id(), err)
	}
	if err := b.Put(u64(t.seq), v); err != nil {
		return fmt.Errorf("store task %s: %w", t.id(), err)
	}
	return nil
}

// limitLocked is how many of plugin name's keys may run at once: its
// instances, but no more than the execution slots, and when other plugins
// are loaded at most all but one of them, so that one plugin never holds
// every slot. A call beyond the slots would only take turns with the
// others at their yields, and hold a warm instance of its own for it.
func (d *Dispatcher) limitLocked(name string) int {
	s := d.current.Load()
	l := s.find(name)
	if l == nil || l.p == nil {
		return 1 // only to drop its tasks
	}
	n := min(l.p.Limits().Instances, d.opts.Concurrency)
	if len(s.plugins) > 1 && d.opts.Concurrency > 1 {
		n = min(n, d.opts.Concurrency-1)
	}
	return n
}

// pumpLocked starts a worker for every ready key within its plugin's limit.
func (d *Dispatcher) pumpLocked() {
	if d.closed {
		return
	}
	for _, q := range d.queues {
		limit := d.limitLocked(q.name)
		for q.running < limit && len(q.ready) > 0 {
			kq := q.ready[0]
			q.ready = q.ready[1:]
			if len(kq.tasks) == 0 {
				// Its only task was not stored after all (add).
				kq.scheduled = false
				if q.keys[kq.key] == kq {
					delete(q.keys, kq.key)
				}
				continue
			}
			q.running++
			d.wg.Add(1)
			t := kq.tasks[0]
			t.taken = true
			reuse.Go(func() { d.work(q, kq, t) })
		}
	}
}

// work runs the first task of kq. The plugin's worker is free for its next
// ready key as soon as the call returns; kq stays scheduled until the
// call's requests are stored, so the next call on kq stores after it.
func (d *Dispatcher) work(q *queue, kq *keyQueue, t *task) {
	defer d.wg.Done()
	out, wait, ds := d.run(t)
	d.mu.Lock()
	q.running--
	d.pumpLocked()
	d.mu.Unlock()
	if len(ds) > 0 {
		out, wait = d.store(t, ds)
	}
	if t.stored != nil {
		// Mostly no wait: the requests just stored shared add's commit.
		// Once it is closed, unstored is settled.
		<-t.stored
	}
	if t.unstored && out != taskAborted {
		d.mu.Lock()
		defer d.mu.Unlock()
		kq.scheduled = false
		d.removeLocked(t)
		q.kick(kq)
		d.pumpLocked()
		return
	}
	switch out {
	case taskDone, taskSkipped, taskDropped:
		d.finishedMu.Lock()
		d.finished = append(d.finished, t)
		d.finishedMu.Unlock()
	case taskRetry:
		if err := d.db.Batch(func(tx *bolt.Tx) error { return putTask(tx.Bucket(bucketTasks), t) }); err != nil {
			d.log.Error("plugin task file: recording a failed attempt failed", "plugin", q.name, "event_id", t.rec.EventID, "err", err)
		}
	}
	if out != taskAborted {
		d.m.tasks.WithLabelValues(q.name, outcomeNames[out]).Inc()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	switch out {
	case taskRetry:
		// The key stays scheduled, so its later tasks wait behind this one.
		time.AfterFunc(wait, func() {
			d.mu.Lock()
			defer d.mu.Unlock()
			q.ready = append(q.ready, kq)
			d.pumpLocked()
		})
	case taskAborted:
		kq.scheduled = false
	default:
		kq.scheduled = false
		d.removeLocked(t)
		q.kick(kq)
	}
	d.pumpLocked()
}

// flushFinished removes the tasks finished since the last flush from the
// file, all in one commit: a finished task does not cost a commit of its
// own. A crash before the flush only means the call is made again after
// the restart; its requests keep their ids, so the outbox does not store
// them twice.
func (d *Dispatcher) flushFinished() {
	ts := d.takeFinished()
	if len(ts) == 0 {
		return
	}
	err := d.db.Update(func(tx *bolt.Tx) error { return deleteTasks(tx, ts) })
	if err != nil {
		d.log.Error("plugin task file: removing finished tasks failed; their calls are made again after a restart", "tasks", len(ts), "err", err)
	}
}

// takeFinished hands the finished tasks not yet removed from the file to a
// commit that removes them: flushFinished's, or one that is made anyway
// (add's), so that under load they cost no commit of their own.
func (d *Dispatcher) takeFinished() []*task {
	d.finishedMu.Lock()
	defer d.finishedMu.Unlock()
	ts := d.finished
	d.finished = nil
	return ts
}

// returnFinished gives back the finished tasks of a commit that failed, for
// the next one.
func (d *Dispatcher) returnFinished(ts []*task) {
	if len(ts) == 0 {
		return
	}
	d.finishedMu.Lock()
	defer d.finishedMu.Unlock()
	d.finished = append(d.finished, ts...)
}

func deleteTasks(tx *bolt.Tx, ts []*task) error {
	for _, t := range ts {
		if err := deleteTask(tx, t); err != nil {
			return err
		}
	}
	return nil
}

// flushLoop runs flushFinished every Options.FinishedInterval until stop
// closes.
func (d *Dispatcher) flushLoop(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(d.opts.FinishedInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			d.flushFinished()
		}
	}
}

func deleteTask(tx *bolt.Tx, t *task) error {
	if err := tx.Bucket(bucketTasks).Delete(u64(t.seq)); err != nil {
		return fmt.Errorf("remove task %s: %w", t.id(), err)
	}
	if err := tx.Bucket(bucketTaskIDs).Delete(t.id()); err != nil {
		return fmt.Errorf("unindex task %s: %w", t.id(), err)
	}
	return nil
}

// run calls t's plugin on t's event and returns the requests it asks for,
// checked; an outcome other than taskDone has none.
func (d *Dispatcher) run(t *task) (outcome, time.Duration, []deliver.Delivery) {
	name := t.rec.Plugin
	log := d.log.With("event_id", t.rec.EventID)
	l := d.current.Load().find(name)
	if l == nil || l.p == nil {
		log.Warn("plugin no longer loaded, or off until configured; its call on this event is dropped", "plugin", name)
		return taskDropped, 0, nil
	}
	ctx := d.ctx
	if until := d.paused(name, time.Now()); !until.IsZero() {
		err := fmt.Errorf("plugin %s is paused until %s: its calls kept crashing or running out of time", name, until.Format(time.RFC3339))
		if l.conf.Failure == pluginconf.FailureHold {
			return taskRetry, time.Until(until), nil
		}
		log.Debug("plugin paused; its call on this event is skipped (failure: skip)", "plugin", name, "err", err)
		return taskSkipped, 0, nil
	}
	sl := &slot{d: d}
	if !sl.take() {
		return taskAborted, 0, nil
	}
	actions, err := d.call(plugin.WithSleeper(ctx, sl), l, t.rec.Body, log)
	sl.give()
	if ctx.Err() != nil {
		return taskAborted, 0, nil
	}
	d.judged(name, err, log)
	var ds []deliver.Delivery
	if err == nil {
		ds, err = d.requests(ctx, l, t, actions)
	}
	if err != nil {
		out, wait := d.failed(l, t, err, log)
		return out, wait, nil
	}
	return taskDone, 0, ds
}

// store puts a call's requests in the outbox.
func (d *Dispatcher) store(t *task, ds []deliver.Delivery) (outcome, time.Duration) {
	if err := d.opts.Outbox.Enqueue(d.ctx, ds); err != nil {
		if d.ctx.Err() != nil {
			return taskAborted, 0
		}
		// The store, not the plugin, failed: no attempt is charged.
		wait := d.backoff(t.rec.Attempts + 1)
		d.log.Error("storing a plugin's requests failed; tried again", "plugin", t.rec.Plugin, "event_id", t.rec.EventID,
			"requests", len(ds), "retry_in", wait.String(), "err", err)
		return taskRetry, wait
	}
	return taskDone, 0
}

// requests turns a call's actions into outbox entries, each checked as the
// outbox will check it.
func (d *Dispatcher) requests(ctx context.Context, l *loaded, t *task, actions []plugin.Action) ([]deliver.Delivery, error) {
	if len(actions) == 0 {
		return nil, nil
	}
	allow := l.allowed(ctx)
	ds := make([]deliver.Delivery, 0, len(actions))
	for i, a := range actions {
		x := delivery(t.rec.EventID, t.rec.Key, l.conf, allow, i, a)
		if err := deliver.Validate(x); err != nil {
			return nil, fmt.Errorf("plugin %s: request %d refused: %w", l.conf.Name, i, err)
		}
		ds = append(ds, x)
	}
	return ds, nil
}

// failed applies the plugin's failure policy to a failed task.
func (d *Dispatcher) failed(l *loaded, t *task, err error, log *slog.Logger) (outcome, time.Duration) {
	name := l.conf.Name
	if l.conf.Failure != pluginconf.FailureHold {
		log.Error("plugin failed; event skipped for it (failure: skip)", "plugin", name, "err", err)
		return taskSkipped, 0
	}
	t.rec.Attempts++
	t.rec.LastError = err.Error()
	if t.rec.Attempts < d.opts.HoldAttempts {
		wait := d.backoff(t.rec.Attempts)
		log.Warn("plugin failed; its call on this event is tried again (failure: hold)", "plugin", name,
			"attempt", t.rec.Attempts, "of", d.opts.HoldAttempts, "retry_in", wait.String(), "err", err)
		return taskRetry, wait
	}
	if t.stored != nil {
		// Kept as failed only once its own write is known to hold it.
		<-t.stored
		if t.unstored {
			return taskFailed, 0 // its worker removes it
		}
	}
	perr := d.db.Batch(func(tx *bolt.Tx) error {
		if err := deleteTask(tx, t); err != nil {
			return err
		}
		return putTask(tx.Bucket(bucketFailed), t)
	})
	if perr != nil {
		log.Error("plugin task file: keeping a failed task failed", "plugin", name, "err", perr)
	}
	d.mu.Lock()
	d.nFailed++
	d.m.failedTasks.Set(float64(d.nFailed))
	d.mu.Unlock()
	log.Error("plugin failed for the last time; its call on this event is kept as a failed task (failure: hold)", "plugin", name,
		"attempts", t.rec.Attempts, "err", err)
	return taskFailed, 0
}

// backoff is the wait after the n-th failed attempt: HoldBackoff doubling,
// at most a minute.
func (d *Dispatcher) backoff(n int) time.Duration {
	w := d.opts.HoldBackoff
	for i := 1; i < n && w < maxHoldBackoff; i++ {
		w *= 2
	}
	return min(w, maxHoldBackoff)
}

// dropRemoved drops the tasks of plugins no longer loaded, except those
// scheduled or being stored, which end on their own; it logs one line per
// plugin.
func (d *Dispatcher) dropRemoved() {
	s := d.current.Load()
	d.mu.Lock()
	var drop []*task
	count := map[string]int{}
	for name, q := range d.queues {
		if l := s.find(name); l != nil && l.p != nil {
			continue
		}
		for _, kq := range q.keys {
			for i, t := range kq.tasks {
				if i == 0 && kq.scheduled || !t.durable {
					continue
				}
				drop = append(drop, t)
				count[name]++
			}
		}
	}
	for _, t := range drop {
		d.removeLocked(t)
	}
	for name, q := range d.queues {
		if l := s.find(name); q.n == 0 && q.running == 0 && (l == nil || l.p == nil) {
			delete(d.queues, name)
			d.m.queued.DeleteLabelValues(name)
		}
	}
	d.mu.Unlock()
	if len(drop) == 0 {
		return
	}
	err := d.db.Batch(func(tx *bolt.Tx) error {
		for _, t := range drop {
			if err := deleteTask(tx, t); err != nil {
				return err
			}
		}
		return nil
	})
	for name, n := range count {
		d.m.tasks.WithLabelValues(name, "dropped").Add(float64(n))
		d.log.Warn("plugin removed; its pending calls are dropped", "plugin", name, "tasks", n)
	}
	if err != nil {
		d.log.Error("plugin task file: removing dropped tasks failed; they are dropped again at the next start", "err", err)
	}
}

// WaitIdle returns when no plugin call is pending, or with ctx's error.
// Calls given up under failure: hold do not count.
func (d *Dispatcher) WaitIdle(ctx context.Context) error {
	for {
		d.mu.Lock()
		n, ch := d.pending, d.idle
		d.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("plugins: wait idle with %d calls pending: %w", n, ctx.Err())
		}
	}
}

// Unfinished is how many plugin calls owed on the given events are not
// yet made (running ones included), and a channel closed when a call next
// finishes.
func (d *Dispatcher) Unfinished(eventIDs []string) (int, <-chan struct{}) {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, id := range eventIDs {
		n += d.byEvent[id]
	}
	return n, d.removed
}

// Pending is the number of plugin calls not yet made, running ones
// included.
func (d *Dispatcher) Pending() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.pending
}

// slot is one call's place under the Concurrency bound. The call gives it
// up while the plugin sleeps (the bound is about CPU, and a sleeping guest
// uses none) and after each stretch of running when others wait, so a plugin
// that sleeps or spins out its time limit holds up only itself. Only the
// call's goroutine uses it.
type slot struct {
	d    *Dispatcher
	held bool
}

func (s *slot) take() bool {
	if s.held {
		return true
	}
	s.d.slotWaiters.Add(1)
	err := s.d.slots.Acquire(s.d.ctx, 1)
	s.d.slotWaiters.Add(-1)
	if err != nil {
		return false
	}
	s.held = true
	s.d.m.running.Inc()
	return true
}

func (s *slot) give() {
	if s.held {
		s.held = false
		s.d.m.running.Dec()
		s.d.slots.Release(1)
	}
}

// Sleep implements plugin.Sleeper.
func (s *slot) Sleep() { s.give() }

// Wake implements plugin.Sleeper: the call waits for a place again before
// the plugin goes on; on shutdown it goes on without one and ends soon.
func (s *slot) Wake() { s.take() }

// Yield implements plugin.Sleeper: with calls waiting for a place, this one
// gives its place up and queues behind them (the semaphore is FIFO), so
// the calls of a plugin that spins take turns with the others after each
// stretch instead of holding the place to its time limit.
func (s *slot) Yield() {
	if s.held && s.d.slotWaiters.Load() > 0 {
		s.give()
		s.take()
	}
}
