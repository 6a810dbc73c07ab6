package service

import (
	"context"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"time"
)

// trimEvery is how often the service looks at how much it allocated.
const trimEvery = 2 * time.Second

// quietAlloc is what the service may allocate in trimEvery and still count
// as quiet: serving /metrics and the odd event, not a burst.
const quietAlloc = 8 << 20

// trimAfter is what must have been allocated since the last trim for the
// next one to be worth a full collection (a few tens of milliseconds of
// CPU): a trickle of events reaches it every few minutes, a burst of a
// few hundred events at once.
const trimAfter = 16 << 20

// spareIdle is how long a plugin's instance beyond its first may go
// without a call before it is closed, under load too. Calls take the
// instance used last, so a spare one only a burst needed sits idle once
// one instance carries the calls again; starting one again costs a few
// milliseconds.
const spareIdle = 10 * time.Second

// trimMemory gives back, once the service has gone quiet after a burst,
// the memory the burst left it holding: the Go heap's garbage and the free
// pages it keeps (until the heap would next have doubled, otherwise), the
// plugins' instances beyond one each, and the outbox file's pages. While
// it works, the outbox file's pages are let go each trimEvery, so that a
// backlog read back from the file does not stay resident, and so are the
// plugins' spare instances idle for spareIdle. It returns when ctx ends.
func (s *Service) trimMemory(ctx context.Context) {
	sample := []rtmetrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	allocated := func() uint64 {
		rtmetrics.Read(sample)
		return sample[0].Value.Uint64()
	}
	t := time.NewTicker(trimEvery)
	defer t.Stop()
	w := trimWatch{last: allocated()}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		release, trim := w.tick(allocated())
		if release {
			if err := s.outbox.ReleaseMapped(); err != nil {
				s.log.Warn("outbox pages not released", "err", err)
			}
		}
		if trim {
			closed := s.plugins.Shrink(0)
			debug.FreeOSMemory()
			s.log.Debug("quiet after a burst: memory returned", "instances_closed", closed)
		} else if closed := s.plugins.Shrink(spareIdle); closed > 0 {
			s.log.Debug("spare plugin instances closed", "instances_closed", closed, "idle_for", spareIdle)
		}
	}
}

// trimWatch decides, from the allocation counter read each trimEvery,
// what trimMemory does.
type trimWatch struct {
	last  uint64 // the counter at the last tick
	since uint64 // allocated since the last trim
}

// tick takes the counter now and tells whether to release the outbox
// file's pages (anything was allocated: something worked) and whether to
// trim (quiet now, after enough work since the last trim).
func (w *trimWatch) tick(now uint64) (release, trim bool) {
	delta := now - w.last
	w.last, w.since = now, w.since+delta
	if delta == 0 {
		return false, false
	}
	if delta >= quietAlloc || w.since < trimAfter {
		return true, false
	}
	w.since = 0
	return true, true
}
