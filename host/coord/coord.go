// Package coord is how lkedge replicas agree: named locks with a time to live
// that any replica may release (the Meet recording lock), and system events
// that a waiter anywhere can receive (recording_active).
//
// The in-process backend here serves one machine; a Consul backend satisfies
// the same interface for several replicas.
package coord

import (
	"context"
	"time"
)

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
}
