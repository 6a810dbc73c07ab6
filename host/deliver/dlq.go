package deliver

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// view runs fn in a read transaction unless the outbox is closed.
func (o *Outbox) view(fn func(tx *bolt.Tx) error) error {
	o.closeMu.RLock()
	defer o.closeMu.RUnlock()
	if o.closed {
		return ErrClosed
	}
	return o.db.View(fn)
}

// DeadLetters returns the dead letters that died at or after since, oldest
// first and newest last. When there are more than limit (> 0), the newest
// limit are returned: an operator looking at a failure wants the latest.
func (o *Outbox) DeadLetters(since time.Time, limit int) ([]DeadLetter, error) {
	var out []DeadLetter
	err := o.view(func(tx *bolt.Tx) error {
		floor := msKey(since)
		c := tx.Bucket(bucketDead).Cursor()
		for k, v := c.Last(); k != nil && bytes.Compare(k, floor) >= 0; k, v = c.Prev() {
			r, err := decodeRecord(v)
			if err != nil {
				o.log.Error("outbox: skipping undecodable dead letter", "key", fmt.Sprintf("%x", k), "error", err)
				continue
			}
			if r.DeadAt.Before(since) {
				continue
			}
			out = append(out, r.deadLetter())
			if limit > 0 && len(out) == limit {
				break
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("outbox: list dead letters: %w", err)
	}
	slices.Reverse(out)
	return out, nil
}

// DeadLetter returns the dead letter with the given delivery id, or an error
// wrapping ErrNotFound.
func (o *Outbox) DeadLetter(id string) (DeadLetter, error) {
	var dl DeadLetter
	err := o.view(func(tx *bolt.Tx) error {
		key := tx.Bucket(bucketDeadIDs).Get([]byte(id))
		if key == nil {
			return ErrNotFound
		}
		v := tx.Bucket(bucketDead).Get(key)
		if v == nil {
			return ErrNotFound
		}
		r, err := decodeRecord(v)
		if err != nil {
			return err
		}
		dl = r.deadLetter()
		return nil
	})
	if err != nil {
		return DeadLetter{}, fmt.Errorf("outbox: dead letter %q: %w", id, err)
	}
	return dl, nil
}

// Replay puts the dead letter id back to pending with its attempts reset
// and its original CreatedAt. It queues behind whatever is already pending
// for the same (plugin, origin, resource).
func (o *Outbox) Replay(ctx context.Context, id string) error {
	n, err := o.replay(ctx, func(tx *bolt.Tx) ([][]byte, error) {
		key := tx.Bucket(bucketDeadIDs).Get([]byte(id))
		if key == nil {
			return nil, ErrNotFound
		}
		return [][]byte{bytes.Clone(key)}, nil
	})
	if err != nil {
		return fmt.Errorf("outbox: replay %q: %w", id, err)
	}
	if n != 1 {
		return fmt.Errorf("outbox: replay %q: %w", id, ErrNotFound)
	}
	return nil
}

// ReplaySince replays every dead letter that died at or after since, in the
// order they died, and returns how many it replayed.
func (o *Outbox) ReplaySince(ctx context.Context, since time.Time) (int, error) {
	n, err := o.replay(ctx, func(tx *bolt.Tx) ([][]byte, error) {
		var keys [][]byte
		c := tx.Bucket(bucketDead).Cursor()
		for k, v := c.Seek(msKey(since)); k != nil; k, v = c.Next() {
			r, err := decodeRecord(v)
			if err != nil || r.DeadAt.Before(since) {
				continue // an undecodable letter stays for inspection
			}
			keys = append(keys, bytes.Clone(k))
		}
		return keys, nil
	})
	if err != nil {
		return 0, fmt.Errorf("outbox: replay since %s: %w", since.Format(time.RFC3339), err)
	}
	return n, nil
}

// replay moves the dead letters that pick selects back to pending in one
// transaction and hands them to the scheduler.
func (o *Outbox) replay(ctx context.Context, pick func(tx *bolt.Tx) ([][]byte, error)) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	o.closeMu.RLock()
	defer o.closeMu.RUnlock()
	if o.closed {
		return 0, ErrClosed
	}
	var items []*item
	err := o.db.Update(func(tx *bolt.Tx) error {
		keys, err := pick(tx)
		if err != nil {
			return err
		}
		for _, k := range keys {
			it, err := revive(tx, k)
			if err != nil {
				return err
			}
			items = append(items, it)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	for _, it := range items {
		d := &it.rec.Delivery
		o.log.Info("dead letter replayed", logAttrs(d)...)
	}
	o.mu.Lock()
	o.sched.dead -= len(items)
	o.mu.Unlock()
	o.addItems(items)
	return len(items), nil
}
