package livekitapi

import (
	"errors"
	"net"
	"net/http"
	"sync"
	"time"
)

// ErrUnreachable is returned (wrapped) by calls made while LiveKit is taken
// to be unreachable: for unreachableFor after a connection to it failed.
var ErrUnreachable = errors.New("livekit unreachable")

// unreachableFor is how long a failed connection keeps calls from trying
// again. Every egress event of a room that Meet's store does not know asks
// LiveKit about it; while LiveKit is down, each would otherwise pay a dial
// (or wait for the call's timeout), which was the largest single item of
// lkedge's CPU in the load benchmark, where no LiveKit runs. Failing fast
// gives those lookups the answer the dial would have: an error, which the
// ownership check takes as "not Meet's", as OpenVidu Meet does.
const unreachableFor = time.Second

// breaker is an http.RoundTripper that notes when a connection to the
// server failed; the client's calls check it (check) before they are built
// and fail fast for unreachableFor after that. Only connection failures
// count: an answer of any status means LiveKit is there.
type breaker struct {
	base http.RoundTripper
	now  func() time.Time

	mu      sync.Mutex
	until   time.Time // calls fail fast before this
	lastErr error     // the connection failure that opened it
}

// check returns an ErrUnreachable error while calls are to fail fast. It
// runs before a call is built: failing inside RoundTrip still cost the
// Twirp request and its wrapped errors, about two fifths of what a refused
// dial had cost.
func (b *breaker) check() error {
	b.mu.Lock()
	until, lastErr := b.until, b.lastErr
	b.mu.Unlock()
	if now := b.now(); now.Before(until) {
		return &unreachableError{left: until.Sub(now), cause: lastErr}
	}
	return nil
}

// RoundTrip is part of http.RoundTripper: it opens the breaker when the
// connection to LiveKit fails.
func (b *breaker) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := b.base.RoundTrip(req)
	if op := (*net.OpError)(nil); errors.As(err, &op) && op.Op == "dial" {
		b.mu.Lock()
		b.until, b.lastErr = b.now().Add(unreachableFor), err
		b.mu.Unlock()
	}
	return res, err
}
