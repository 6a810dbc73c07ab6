package pipeline_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/lkedge/lkedge/host/coord"
	"github.com/lkedge/lkedge/host/pipeline"
)

// flakyClaimer fails a number of claims (a coordinator outage), then
// answers with the outcome given per event id.
type flakyClaimer struct {
	mu       sync.Mutex
	failures int
	dup      map[string]bool
	owners   []string
}

type nopClaim struct{}

func (nopClaim) End() {}

func (c *flakyClaimer) Claim(_ context.Context, eventID, _, owner string) (coord.Claim, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.owners = append(c.owners, owner)
	if c.failures > 0 {
		c.failures--
		return nil, errors.New("consul: connection refused")
	}
	if c.dup[eventID] {
		return nil, coord.ErrDuplicate
	}
	return nopClaim{}, nil
}

// TestClaimOutageDoesNotUseAttempts: a coordinator outage longer than the
// event's attempts allow still ends with the event done, not failed.
func TestClaimOutageDoesNotUseAttempts(t *testing.T) {
	j := &fakeJournal{}
	cl := &flakyClaimer{failures: 5}
	p := pipeline.New(okStage, (&recSink{}).sink, j, pipeline.Options{
		MaxAttempts: 1, Backoff: time.Millisecond, Claimer: cl, Replica: "r1", Logger: quiet,
	})
	stop := run(t, p)
	defer stop()
	submit(t, p, mkEvent(t, "EV_1", "r"), 7)
	waitIdle(t, p)
	done, failed := j.snapshot()
	if len(done) != 1 || len(failed) != 0 {
		t.Fatalf("Done %v, Fail %v; want the event done after the outage", done, failed)
	}
	if cl.owners[0] != "r1/7" {
		t.Errorf("claim owner %q, want replica/seq r1/7", cl.owners[0])
	}
}

// TestDuplicateClaimIsDoneNotProcessed: an event another replica claimed is
// marked done here without running the stage or the sink.
func TestDuplicateClaimIsDoneNotProcessed(t *testing.T) {
	j := &fakeJournal{}
	sink := &recSink{}
	p := pipeline.New(okStage, sink.sink, j, pipeline.Options{Claimer: &flakyClaimer{dup: map[string]bool{"EV_dup": true}}, Logger: quiet})
	stop := run(t, p)
	defer stop()
	submit(t, p, mkEvent(t, "EV_dup", "r"), 1)
	waitIdle(t, p)
	if done, _ := j.snapshot(); len(done) != 1 {
		t.Errorf("Done %v, want [1]", done)
	}
	if got := sink.snapshot(); len(got) != 0 {
		t.Errorf("sink got %v for a duplicate", got)
	}
}
