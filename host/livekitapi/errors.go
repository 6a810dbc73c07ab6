package livekitapi

import (
	"fmt"
	"time"
)

// The errors of this package are formatted when they are read, not when
// they are made. While LiveKit is unreachable, every egress event of a room
// that Meet's store does not know fails its room lookup at once, and the
// caller counts the failure and logs it at warn. Formatting the cause for
// every event showed in the ownership check's profile under load
// (docs/benchmarks.md), spent on text that a service logging at error
// never writes.

// callError is a failed call to LiveKit: which call, what it was about and
// why. Its text is "livekit <call> <subject>: <err>".
type callError struct {
	call, subject string
	err           error
}

func (e *callError) Error() string {
	return "livekit " + e.call + " " + e.subject + ": " + e.err.Error()
}

func (e *callError) Unwrap() error { return e.err }

// unreachableError is what a call gets while the breaker is open: how much
// longer calls fail fast, and the connection failure that opened it (named
// in the text only, as before: callers test for ErrUnreachable).
type unreachableError struct {
	left  time.Duration
	cause error
}

func (e *unreachableError) Error() string {
	return fmt.Sprintf("%v for %s more after: %v", ErrUnreachable, e.left.Round(time.Millisecond), e.cause)
}

func (e *unreachableError) Is(target error) bool { return target == ErrUnreachable }
