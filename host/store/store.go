// Package store is lkedge's object storage: the one small interface the Meet
// logic keeps its metadata behind, shaped after S3 so the file backend used on
// one machine and the S3 backend used in production mean the same thing.
//
// Keys are S3 object keys inside the configured bucket. Bodies are opaque
// bytes. Every backend offers the conditional writes the Meet logic relies on
// to stay correct with several replicas: create-only (If-None-Match: *) and
// compare-and-swap (If-Match: <etag>).
package store

import (
	"context"
	"errors"
)

// ErrNotFound is returned by Get when no object exists under the key.
var ErrNotFound = errors.New("store: object not found")

// ErrPrecondition is returned by Put when its condition does not hold: the
// object exists under a create-only write, or its ETag differs from IfMatch.
var ErrPrecondition = errors.New("store: precondition failed")

// ErrInvalidKey is returned for a key the backend cannot hold (the file
// backend refuses "..", empty segments and the like). No object can exist
// under such a key.
var ErrInvalidKey = errors.New("store: invalid key")

// Object is one stored object as read back.
type Object struct {
	Body []byte
	// ETag identifies this exact version; pass it as PutOptions.IfMatch to
	// replace the object only if nobody changed it since it was read.
	ETag string
	// Meta is the user metadata stored with this version (S3 x-amz-meta-*).
	// Keys are lower case.
	Meta map[string]string
}

// PutOptions makes a write conditional and attaches user metadata.
type PutOptions struct {
	// IfNoneMatch set to true writes only if no object exists under the key.
	IfNoneMatch bool
	// IfMatch, if not empty, writes only if the current object's ETag equals it.
	IfMatch string
	// Meta is stored with the object and returned by Get. Keys must be lower
	// case ASCII letters, digits and '-'; values printable ASCII.
	Meta map[string]string
}

// Store is the storage contract every backend satisfies.
type Store interface {
	// Get reads the object under key, or returns ErrNotFound.
	Get(ctx context.Context, key string) (Object, error)
	// Put writes body under key and returns the new ETag. A failed condition
	// returns ErrPrecondition and leaves the object unchanged. A successful
	// Put is durable when it returns.
	Put(ctx context.Context, key string, body []byte, opts PutOptions) (etag string, err error)
	// Delete removes the object under key. Deleting a missing object is not an error.
	Delete(ctx context.Context, key string) error
	// List returns the keys that start with prefix, in lexical order.
	List(ctx context.Context, prefix string) ([]string, error)
}
