// Package coord is how lkedge replicas agree:
//   - named locks with a time to live that any replica may release (the Meet
//     recording lock);
//   - system events that a waiter anywhere can receive (recording_active);
//   - admission: each accepted event is recognised once across replicas
//     and takes its place in its room's sequence before it is answered, and
//     turns let the replicas process a room's events in that order;
//   - leadership, so periodic work runs on one replica.
//
// The in-process backend here serves one machine; the Consul backend
// (coord/consulcoord) satisfies the same interface for several replicas.
package coord

import (
	"context"
	"errors"
	"time"
)

// ErrDuplicate is returned by Admit when another replica (or an earlier
// delivery) already admitted the event.
var ErrDuplicate = errors.New("coord: event already admitted")

// Ticket is an event's place in its order key's sequence, given when the
// event was admitted. Tickets of one key are numbered 1, 2, 3... within an
// epoch; a key whose events are all finished is forgotten, and its next
// event starts a new epoch.
type Ticket struct {
	Epoch uint64
	N     uint64
}

// Turn is a replica's right to process one admitted event: every event
// admitted before it under the same key is finished, or was given up
// because the replica holding it is gone.
type Turn interface {
	// Context ends when this replica may no longer be the only one working
	// on the key (it lost its coordination session): the work must stop,
	// and is tried again under a new turn.
	Context() context.Context
	// Late reports that later events of the key were processed before this
	// one (its replica lost its session before processing it): it is
	// processed anyway, as an event LiveKit itself delivered late.
	Late() bool
	// Done records the event as finished, so the key's next event may go.
	// It retries while the backend is unreachable, until ctx ends.
	Done(ctx context.Context) error
}

// LockInfo describes a held lock.
type LockInfo struct {
	Name       string
	AcquiredAt time.Time
	ExpiresAt  time.Time
}

// Event is a system event: a type such as "recording_active" and its JSON
// payload.
type Event struct {
	Type    string
	Payload []byte
}

// Coordinator is the coordination contract every backend satisfies.
type Coordinator interface {
	// Acquire takes the named lock for ttl. It returns false, without error,
	// when the lock is already held.
	Acquire(ctx context.Context, name string, ttl time.Duration) (bool, error)
	// Release frees the named lock whoever took it. Releasing a lock that is
	// not held is not an error: it reports false.
	Release(ctx context.Context, name string) (bool, error)
	// Locks lists the held locks whose names start with prefix.
	Locks(ctx context.Context, prefix string) ([]LockInfo, error)
	// Publish delivers ev to every current subscriber of ev.Type, on every replica.
	Publish(ctx context.Context, ev Event) error
	// Subscribe receives the events of the given type published from now on,
	// until ctx ends; the channel is then closed.
	Subscribe(ctx context.Context, eventType string) (<-chan Event, error)

	// Admit records that owner accepted event eventID and gives it the next
	// ticket of orderKey. It returns ErrDuplicate if a different owner
	// admitted the event recently; the same owner admitting it again (a
	// retry, or a replay after a restart) gets its first ticket back. A
	// replica answers a webhook only once it is admitted, so tickets follow
	// the order in which the sender saw its webhooks answered.
	Admit(ctx context.Context, eventID, orderKey, owner string) (Ticket, error)
	// Turn waits until the event holding ticket t may be processed: every
	// earlier ticket of orderKey is done or given up.
	Turn(ctx context.Context, orderKey string, t Ticket) (Turn, error)
	// Lead runs fn whenever this replica is the leader for role, cancelling
	// fn's context when leadership is lost, until ctx ends.
	Lead(ctx context.Context, role string, fn func(ctx context.Context)) error
	// Ping reports whether the backend can be used right now (readiness).
	Ping(ctx context.Context) error
}
