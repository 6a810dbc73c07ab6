package boltbatch

import (
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func open(t *testing.T) *DB {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "b.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("b")); return err }); err != nil {
		t.Fatal(err)
	}
	return New(db)
}

func put(k string) func(*bolt.Tx) error {
	return func(tx *bolt.Tx) error { return tx.Bucket([]byte("b")).Put([]byte(k), []byte(k)) }
}

func stored(t *testing.T, db *DB, k string) bool {
	t.Helper()
	var ok bool
	if err := db.View(func(tx *bolt.Tx) error { ok = tx.Bucket([]byte("b")).Get([]byte(k)) != nil; return nil }); err != nil {
		t.Fatal(err)
	}
	return ok
}

// TestCallsArrivingDuringACommitShareTheNext: while one commit runs, the
// calls that arrive wait for it and then all go into one transaction.
func TestCallsArrivingDuringACommitShareTheNext(t *testing.T) {
	db := open(t)
	entered, hold := make(chan struct{}), make(chan struct{})
	release := sync.OnceFunc(func() { close(hold) })
	defer release() // before the database closes, should the test fail
	var first sync.WaitGroup
	first.Go(func() {
		err := db.Batch(func(tx *bolt.Tx) error {
			close(entered)
			<-hold
			return put("first")(tx)
		})
		if err != nil {
			t.Error(err)
		}
	})
	<-entered
	const n = 20
	var mu sync.Mutex
	txs := map[int]bool{}
	var rest sync.WaitGroup
	for i := range n {
		rest.Go(func() {
			err := db.Batch(func(tx *bolt.Tx) error {
				mu.Lock()
				txs[tx.ID()] = true
				mu.Unlock()
				return put(fmt.Sprint(i))(tx)
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	waitQueued(t, db, n)
	release()
	first.Wait()
	rest.Wait()
	if len(txs) != 1 {
		t.Errorf("%d calls that waited together went into %d transactions, want 1", n, len(txs))
	}
	for i := range n {
		if !stored(t, db, fmt.Sprint(i)) {
			t.Errorf("call %d not committed", i)
		}
	}
}

// TestAFailingCallFailsAlone: a function that fails, or panics, gets its
// own error, and the others in its transaction are committed all the same.
func TestAFailingCallFailsAlone(t *testing.T) {
	boom := errors.New("boom")
	for _, tc := range []struct {
		name string
		bad  func(*bolt.Tx) error
		want string
	}{
		{"error", func(*bolt.Tx) error { return boom }, "boom"},
		{"panic", func(*bolt.Tx) error { panic("kaput") }, "panicked: kaput"},
		{"writes, then fails", func(tx *bolt.Tx) error {
			if err := put("bad")(tx); err != nil {
				return err
			}
			return boom
		}, "boom"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := open(t)
			entered, hold := make(chan struct{}), make(chan struct{})
			release := sync.OnceFunc(func() { close(hold) })
			defer release()
			var wg sync.WaitGroup
			wg.Go(func() {
				_ = db.Batch(func(tx *bolt.Tx) error {
					select {
					case <-entered:
					default:
						close(entered)
					}
					<-hold
					return nil
				})
			})
			<-entered
			errs := make([]error, 3)
			for i := range 3 {
				fn := put(fmt.Sprint(i))
				if i == 1 {
					fn = tc.bad
				}
				wg.Go(func() { errs[i] = db.Batch(fn) })
			}
			waitQueued(t, db, 3)
			release()
			wg.Wait()
			if errs[1] == nil || !strings.Contains(errs[1].Error(), tc.want) {
				t.Errorf("failing call's error: %v, want one with %q", errs[1], tc.want)
			}
			for _, i := range []int{0, 2} {
				if errs[i] != nil || !stored(t, db, fmt.Sprint(i)) {
					t.Errorf("call %d: error %v, stored %v; want committed", i, errs[i], stored(t, db, fmt.Sprint(i)))
				}
			}
			if stored(t, db, "bad") {
				t.Error("the failing call's write was committed")
			}
		})
	}
}

// waitQueued returns once n calls wait for the next commit.
func waitQueued(t *testing.T, db *DB, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		db.mu.Lock()
		queued := len(db.queue)
		db.mu.Unlock()
		if queued == n {
			return
		}
		runtime.Gosched()
	}
	t.Fatalf("%d calls never waited together for a commit", n)
}
