// Package boltbatch shares bbolt write transactions between goroutines
// without waiting for company.
//
// bbolt's own DB.Batch holds every call for MaxBatchDelay, so that calls
// arriving meanwhile share its commit: a lone call always waits the whole
// delay. Here a call commits at once when no commit is running, and the
// calls that arrive while one runs share the next (a natural group commit,
// as the journal does): at a low rate a write waits for nothing, at a high
// rate commits fill up by themselves.
package boltbatch

import (
	"errors"
	"fmt"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// DB is a bbolt database whose Batch is a natural group commit. Its other
// methods are bbolt's.
type DB struct {
	*bolt.DB

	mu      sync.Mutex
	queue   []call
	running bool
}

type call struct {
	fn  func(*bolt.Tx) error
	err chan error
}

// New wraps db.
func New(db *bolt.DB) *DB { return &DB{DB: db} }

// Batch runs fn in a write transaction it may share with other calls' and
// returns fn's error, or the commit's. As with bbolt's Batch, fn may run
// more than once: when another function in its transaction fails, the
// transaction is rolled back and the others run again without it, and the
// failing one runs in a transaction of its own for its error. So fn must
// start from scratch each time, and must not depend on the transaction
// holding nothing else.
func (db *DB) Batch(fn func(*bolt.Tx) error) error {
	c := call{fn: fn, err: make(chan error, 1)}
	db.mu.Lock()
	db.queue = append(db.queue, c)
	if !db.running {
		db.running = true
		go db.commits()
	}
	db.mu.Unlock()
	err := <-c.err
	if errors.Is(err, errSolo) {
		err = db.Update(func(tx *bolt.Tx) error { return safely(fn, tx) })
	}
	return err
}

// errSolo tells a caller that its function failed in a shared transaction
// and is to run alone.
var errSolo = errors.New("boltbatch: run alone")

// commits commits the waiting calls, in turn, until none is left.
func (db *DB) commits() {
	for {
		db.mu.Lock()
		calls := db.queue
		db.queue = nil
		if len(calls) == 0 {
			db.running = false
			db.mu.Unlock()
			return
		}
		db.mu.Unlock()
		db.commit(calls)
	}
}

// commit runs calls in one transaction; a function that fails is taken
// out and told to run alone, and the rest run again.
func (db *DB) commit(calls []call) {
	for len(calls) > 0 {
		failed := -1
		err := db.Update(func(tx *bolt.Tx) error {
			for i, c := range calls {
				if err := safely(c.fn, tx); err != nil {
					failed = i
					return err
				}
			}
			return nil
		})
		if failed >= 0 {
			calls[failed].err <- errSolo
			calls = append(calls[:failed], calls[failed+1:]...)
			continue
		}
		for _, c := range calls {
			c.err <- err
		}
		return
	}
}

// safely calls fn, turning a panic into an error: one caller's bug must
// not take the others' writes, or the committer, down with it.
func safely(fn func(*bolt.Tx) error, tx *bolt.Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("boltbatch: transaction function panicked: %v", p)
		}
	}()
	return fn(tx)
}
