// Package coord is how lkedge replicas agree:
//   - named locks with a time to live that any replica may release (the Meet
//     recording lock);
//   - system events that a waiter anywhere can receive (recording_active);
//   - claims that let exactly one replica handle each event, one event of a
//     room at a time;
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

// ErrDuplicate is returned by Claim when another replica (or an earlier
// delivery) already claimed the event.
var ErrDuplicate = errors.New("coord: event already claimed")

// Claim is one replica's right to handle one event. End it when done.
type Claim interface {
	// End gives the order key up for the next event; backends may hold it a
	// moment longer in case the same replica has the room's next event.
	End()
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

	// Claim claims event eventID for owner and waits until no other claim on
	// orderKey is active, so a room's events are handled one at a time
	// across replicas. It returns ErrDuplicate if a different owner claimed
	// the event recently; the same owner claiming again (a replay after a
	// restart) gets the claim.
	Claim(ctx context.Context, eventID, orderKey, owner string) (Claim, error)
	// Lead runs fn whenever this replica is the leader for role, cancelling
	// fn's context when leadership is lost, until ctx ends.
	Lead(ctx context.Context, role string, fn func(ctx context.Context)) error
	// Ping reports whether the backend can be used right now (readiness).
	Ping(ctx context.Context) error
}
