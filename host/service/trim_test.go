package service

import "testing"

// TestTrimWatch: the memory is returned once, when the service goes quiet
// after enough work; not while it works, not for a trickle, and not again
// until more work was done.
func TestTrimWatch(t *testing.T) {
	const mb = 1 << 20
	w := trimWatch{last: 100 * mb}
	at := uint64(100 * mb)
	steps := []struct {
		what          string
		alloc         uint64
		release, trim bool
	}{
		{"idle", 0, false, false},
		{"a trickle", 1 * mb, true, false},
		{"a burst", 40 * mb, true, false},
		{"still busy", quietAlloc, true, false},
		{"quiet after the burst", 1 * mb, true, true},
		{"quiet again, nothing new to return", 1 * mb, true, false},
		{"idle", 0, false, false},
	}
	for _, s := range steps {
		at += s.alloc
		release, trim := w.tick(at)
		if release != s.release || trim != s.trim {
			t.Errorf("%s (%d MB): release %v, trim %v; want %v, %v", s.what, s.alloc/mb, release, trim, s.release, s.trim)
		}
	}
	// Trickles add up: past trimAfter since the last trim, a quiet tick
	// trims.
	for range trimAfter/(quietAlloc-mb) + 1 {
		at += quietAlloc - mb
		if _, trim := w.tick(at); trim {
			return
		}
	}
	t.Errorf("a trickle past %d MB never trimmed", trimAfter/mb)
}
