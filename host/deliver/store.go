package deliver

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Bucket layout. Sequence numbers come from the pending bucket's sequence,
// so iterating pending yields enqueue order, which is also the order in
// which a restart rebuilds each (plugin, origin, resource) queue.
//
// A pending delivery's body is kept apart from its record, in bodies, and
// read when it is sent: the scheduler keeps records in memory (up to
// Options.RecordsInMemory), and a dead destination on a day-long schedule
// keeps them for a day. A dead letter keeps its body in its record, as
// records written before the bodies bucket existed do.
var (
	bucketPending    = []byte("pending")      // seq (8 bytes BE) -> record without its body
	bucketBodies     = []byte("bodies")       // seq -> body of the pending delivery
	bucketPendingIDs = []byte("pending_ids")  // id -> seq
	bucketDead       = []byte("dead")         // deadAt ms (8) + seq (8) -> record
	bucketDeadIDs    = []byte("dead_ids")     // id -> dead key
	bucketDone       = []byte("done")         // id -> delivered-at ms (8)
	bucketDoneByTime = []byte("done_by_time") // delivered-at ms (8) + id -> nil
)

// maxPrunePerTx bounds the work one prune adds to a write transaction.
const maxPrunePerTx = 4096

// record is what is stored for a pending or dead delivery.
type record struct {
	Delivery   Delivery  `json:"delivery"`
	Attempts   int       `json:"attempts,omitempty"`
	LastError  string    `json:"last_error,omitempty"`
	LastStatus int       `json:"last_status,omitempty"`
	NextAt     time.Time `json:"next_at,omitzero"` // wall clock; no attempt before it
	DeadAt     time.Time `json:"dead_at,omitzero"`
}

func (r *record) deadLetter() DeadLetter {
	return DeadLetter{
		Delivery:   r.Delivery,
		Attempts:   r.Attempts,
		LastError:  r.LastError,
		LastStatus: r.LastStatus,
		DeadAt:     r.DeadAt,
	}
}

func createBuckets(tx *bolt.Tx) error {
	for _, b := range [][]byte{bucketPending, bucketBodies, bucketPendingIDs, bucketDead, bucketDeadIDs, bucketDone, bucketDoneByTime} {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return fmt.Errorf("bucket %s: %w", b, err)
		}
	}
	return nil
}

func u64(v uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, v)
}

// msKey encodes t in Unix milliseconds as a sortable key; times before 1970
// sort first rather than wrapping around.
func msKey(t time.Time) []byte {
	return u64(uint64(max(t.UnixMilli(), 0)))
}

func deadKey(at time.Time, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(msKey(at), seq)
}

func decodeRecord(v []byte) (*record, error) {
	var r record
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("decode record: %w", err)
	}
	return &r, nil
}

func putRecord(b *bolt.Bucket, key []byte, r *record) error {
	v, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode record %q: %w", r.Delivery.ID, err)
	}
	if err := b.Put(key, v); err != nil {
		return fmt.Errorf("store record %q: %w", r.Delivery.ID, err)
	}
	return nil
}

// known reports whether id is pending, dead, or was delivered less than
// window ago: the cases in which Enqueue skips it.
func known(tx *bolt.Tx, id []byte, now time.Time, window time.Duration) bool {
	if tx.Bucket(bucketPendingIDs).Get(id) != nil || tx.Bucket(bucketDeadIDs).Get(id) != nil {
		return true
	}
	v := tx.Bucket(bucketDone).Get(id)
	if len(v) != 8 {
		return false
	}
	doneAt := time.UnixMilli(int64(binary.BigEndian.Uint64(v)))
	return now.Sub(doneAt) < window
}

// enqueueTx stores the records not already known, appending an item for each
// to added.
func enqueueTx(tx *bolt.Tx, recs []*record, now time.Time, window time.Duration, added []*item) ([]*item, error) {
	for _, r := range recs {
		id := []byte(r.Delivery.ID)
		if known(tx, id, now, window) {
			continue
		}
		it, err := insertPending(tx, r)
		if err != nil {
			return nil, err
		}
		added = append(added, it)
	}
	return added, nil
}

// insertPending stores r as pending, its body apart, and returns its item,
// whose record has no body. r itself is left as it is: bolt's Batch may run
// the transaction again.
func insertPending(tx *bolt.Tx, r *record) (*item, error) {
	pending := tx.Bucket(bucketPending)
	seq, err := pending.NextSequence()
	if err != nil {
		return nil, fmt.Errorf("next sequence: %w", err)
	}
	key := u64(seq)
	bare := *r
	bare.Delivery.Body = nil
	if len(r.Delivery.Body) > 0 {
		if err := tx.Bucket(bucketBodies).Put(key, r.Delivery.Body); err != nil {
			return nil, fmt.Errorf("store body %q: %w", r.Delivery.ID, err)
		}
	}
	if err := putRecord(pending, key, &bare); err != nil {
		return nil, err
	}
	if err := tx.Bucket(bucketPendingIDs).Put([]byte(r.Delivery.ID), key); err != nil {
		return nil, fmt.Errorf("index %q: %w", r.Delivery.ID, err)
	}
	return newItem(seq, &bare), nil
}

// pendingBody returns a copy of the body of the pending delivery seq: r's
// own for a record stored with it, else the one in bodies (none for an
// empty body).
func pendingBody(tx *bolt.Tx, seq uint64, r *record) []byte {
	if r.Delivery.Body != nil {
		return r.Delivery.Body
	}
	return bytes.Clone(tx.Bucket(bucketBodies).Get(u64(seq)))
}

// loadPending calls add with the pending records in enqueue order. An
// undecodable record is logged and left in place rather than failing the
// whole outbox.
func loadPending(tx *bolt.Tx, log *slog.Logger, add func(*item)) error {
	return tx.Bucket(bucketPending).ForEach(func(k, v []byte) error {
		if len(k) != 8 {
			log.Error("outbox: skipping pending entry with a malformed key", "key", fmt.Sprintf("%x", k))
			return nil
		}
		r, err := decodeRecord(v)
		if err != nil {
			log.Error("outbox: skipping undecodable pending delivery", "seq", binary.BigEndian.Uint64(k), "error", err)
			return nil
		}
		add(newItem(binary.BigEndian.Uint64(k), r))
		return nil
	})
}

// errRecordGone is readPending's error for a pending delivery whose record
// is no longer stored.
var errRecordGone = errors.New("stored record gone")

// readPending returns what an attempt at the pending delivery seq needs, in
// one read: its record, r unless that is nil (the scheduler dropped it), and
// its body.
func (o *Outbox) readPending(seq uint64, r *record) (*record, []byte, error) {
	var body []byte
	err := o.db.View(func(tx *bolt.Tx) error {
		if r == nil {
			v := tx.Bucket(bucketPending).Get(u64(seq))
			if v == nil {
				return errRecordGone
			}
			var err error
			if r, err = decodeRecord(v); err != nil {
				return err
			}
		}
		body = pendingBody(tx, seq, r)
		return nil
	})
	return r, body, err
}

// markDelivered removes a delivered record from pending and remembers its id
// for the done window.
func markDelivered(tx *bolt.Tx, seq uint64, id string, at time.Time) error {
	if err := removePending(tx, seq, id); err != nil {
		return err
	}
	ms := msKey(at)
	if err := tx.Bucket(bucketDone).Put([]byte(id), ms); err != nil {
		return fmt.Errorf("mark %q done: %w", id, err)
	}
	if err := tx.Bucket(bucketDoneByTime).Put(append(ms, id...), nil); err != nil {
		return fmt.Errorf("index %q done: %w", id, err)
	}
	return nil
}

func removePending(tx *bolt.Tx, seq uint64, id string) error {
	if err := tx.Bucket(bucketPending).Delete(u64(seq)); err != nil {
		return fmt.Errorf("remove pending %q: %w", id, err)
	}
	if err := tx.Bucket(bucketBodies).Delete(u64(seq)); err != nil {
		return fmt.Errorf("remove body of %q: %w", id, err)
	}
	if err := tx.Bucket(bucketPendingIDs).Delete([]byte(id)); err != nil {
		return fmt.Errorf("unindex pending %q: %w", id, err)
	}
	return nil
}

// markDead moves a record from pending to the dead letters, its body into
// its record; r.DeadAt must be set.
func markDead(tx *bolt.Tx, seq uint64, r *record) error {
	id := r.Delivery.ID
	dead := *r
	dead.Delivery.Body = pendingBody(tx, seq, r)
	if err := removePending(tx, seq, id); err != nil {
		return err
	}
	key := deadKey(r.DeadAt, seq)
	if err := putRecord(tx.Bucket(bucketDead), key, &dead); err != nil {
		return err
	}
	if err := tx.Bucket(bucketDeadIDs).Put([]byte(id), key); err != nil {
		return fmt.Errorf("index dead %q: %w", id, err)
	}
	return nil
}

// revive moves the dead letter at key back to pending with its attempts
// reset; CreatedAt is kept so a default hmac timestamp stays the same.
func revive(tx *bolt.Tx, key []byte) (*item, error) {
	dead := tx.Bucket(bucketDead)
	v := dead.Get(key)
	if v == nil {
		return nil, ErrNotFound
	}
	r, err := decodeRecord(v)
	if err != nil {
		return nil, err
	}
	if err := dead.Delete(key); err != nil {
		return nil, fmt.Errorf("remove dead %q: %w", r.Delivery.ID, err)
	}
	if err := tx.Bucket(bucketDeadIDs).Delete([]byte(r.Delivery.ID)); err != nil {
		return nil, fmt.Errorf("unindex dead %q: %w", r.Delivery.ID, err)
	}
	fresh := &record{Delivery: r.Delivery}
	return insertPending(tx, fresh)
}

// pruneTx forgets done ids older than cutoff, at most maxPrunePerTx of them,
// and reports whether more remain.
func pruneTx(tx *bolt.Tx, cutoff time.Time) (bool, error) {
	done, byTime := tx.Bucket(bucketDone), tx.Bucket(bucketDoneByTime)
	limit := msKey(cutoff)
	var keys [][]byte
	c := byTime.Cursor()
	for k, _ := c.First(); k != nil && len(keys) < maxPrunePerTx; k, _ = c.Next() {
		if len(k) < 8 || bytes.Compare(k[:8], limit) >= 0 {
			break
		}
		keys = append(keys, bytes.Clone(k))
	}
	for _, k := range keys {
		if err := byTime.Delete(k); err != nil {
			return false, fmt.Errorf("prune done index: %w", err)
		}
		id := k[8:]
		// A later delivery of the same id re-marked it; keep that mark.
		if bytes.Equal(done.Get(id), k[:8]) {
			if err := done.Delete(id); err != nil {
				return false, fmt.Errorf("prune done %q: %w", id, err)
			}
		}
	}
	return len(keys) == maxPrunePerTx, nil
}

// prune forgets delivered ids older than the done window.
func (o *Outbox) prune() error {
	cutoff := o.opts.Now().Add(-o.opts.DoneWindow)
	for {
		var more bool
		err := o.db.Update(func(tx *bolt.Tx) error {
			var err error
			more, err = pruneTx(tx, cutoff)
			return err
		})
		if err != nil {
			return fmt.Errorf("prune done ids: %w", err)
		}
		if !more {
			return nil
		}
	}
}
