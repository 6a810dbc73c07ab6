package journal

import (
	"slices"
	"testing"
	"time"
)

// TestMarkDone: a mark is committed by itself within a moment, rides on an
// append's commit under load, and is flushed by Close.
func TestMarkDone(t *testing.T) {
	t.Run("alone", func(t *testing.T) {
		j := openT(t, testPath(t), Options{})
		rec := mustAppend(t, j, "EV_1", "{}")
		j.MarkDone(rec.Seq)
		deadline := time.Now().Add(2 * time.Second)
		for len(pendingIDs(t, j)) != 0 {
			if time.Now().After(deadline) {
				t.Fatal("a lone mark was never committed")
			}
			time.Sleep(markDelay)
		}
	})
	t.Run("rides on an append", func(t *testing.T) {
		j := openT(t, testPath(t), Options{})
		first := mustAppend(t, j, "EV_1", "{}")
		before := j.txCount()
		j.MarkDone(first.Seq)
		mustAppend(t, j, "EV_2", "{}") // arrives within markDelay
		if got := j.txCount() - before; got != 1 {
			t.Errorf("%d commits for a mark and an append, want 1", got)
		}
		if ids := pendingIDs(t, j); !slices.Equal(ids, []string{"EV_2"}) {
			t.Errorf("pending = %v, want [EV_2]", ids)
		}
	})
	t.Run("flushed by Close", func(t *testing.T) {
		path := testPath(t)
		j := openT(t, path, Options{})
		rec := mustAppend(t, j, "EV_1", "{}")
		j.MarkDone(rec.Seq)
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
		j = openT(t, path, Options{})
		if ids := pendingIDs(t, j); len(ids) != 0 {
			t.Errorf("pending after Close = %v: the mark was lost", ids)
		}
	})
}
