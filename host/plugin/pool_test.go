package plugin

import (
	"testing"
	"time"
)

func TestIdlePoolTake(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	sec := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }
	for _, tc := range []struct {
		name   string
		idle   []int // seconds after t0 each instance went idle, bottom first
		keep   int
		cutoff int
		taken  []int // indexes into idle
	}{
		{"empty", nil, 1, 10, nil},
		{"all idle long enough, keep one", []int{1, 2, 3}, 1, 10, []int{0, 1}},
		{"keep none", []int{1, 2, 3}, 0, 10, []int{0, 1, 2}},
		{"the cutoff itself counts", []int{1, 2, 3}, 0, 2, []int{0, 1}},
		{"used recently: stay", []int{8, 9}, 0, 5, nil},
		{"the oldest go first", []int{1, 4, 9}, 0, 5, []int{0, 1}},
		{"keep above the idle count", []int{1, 2}, 5, 10, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var q idlePool
			insts := make([]*instance, len(tc.idle))
			for i, s := range tc.idle {
				insts[i] = &instance{}
				q.stack = append(q.stack, idle{insts[i], sec(s)})
			}
			got := q.take(tc.keep, sec(tc.cutoff))
			if len(got) != len(tc.taken) {
				t.Fatalf("took %d, want %d", len(got), len(tc.taken))
			}
			for i, j := range tc.taken {
				if got[i] != insts[j] {
					t.Errorf("took #%d: not the instance idle since %ds", i, tc.idle[j])
				}
			}
			if left := q.len(); left != len(tc.idle)-len(tc.taken) {
				t.Errorf("%d left idle, want %d", left, len(tc.idle)-len(tc.taken))
			}
			// What is left is taken top first: the instance used last.
			if left := q.len(); left > 0 && q.get() != insts[len(insts)-1] {
				t.Error("get did not return the instance put last")
			}
		})
	}
}
