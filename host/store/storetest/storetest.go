// Package storetest is the contract every store.Store backend must pass. It
// tests only behaviour visible through the interface, never file paths, so
// the file backend and the S3 backend are held to exactly the same rules the
// Meet logic relies on.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"maps"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/lkedge/lkedge/host/store"
)

// Run runs the contract suite. newStore is called once per subtest and must
// return a ready store; it may return the same bucket every time (keys in
// each subtest live under a fresh random prefix, so subtests never see each
// other's objects), and should register any cleanup with t.Cleanup.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store, base string)
	}{
		{"GetMissing", testGetMissing},
		{"RoundTrip", testRoundTrip},
		{"CreateOnlyTwice", testCreateOnlyTwice},
		{"IfMatch", testIfMatch},
		{"Overwrite", testOverwrite},
		{"DeleteThenGet", testDeleteThenGet},
		{"DeleteMissing", testDeleteMissing},
		{"ListPrefix", testListPrefix},
		{"ConcurrentCreateOnly", testConcurrentCreateOnly},
		{"ConcurrentCAS", testConcurrentCAS},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newStore(t), uniquePrefix())
		})
	}
}

// uniquePrefix isolates a subtest's keys when backends share a bucket.
func uniquePrefix() string {
	var b [6]byte
	rand.Read(b[:])
	return "storetest-" + hex.EncodeToString(b[:]) + "/"
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func mustPut(t *testing.T, s store.Store, key string, body []byte, opts store.PutOptions) string {
	t.Helper()
	etag, err := s.Put(ctx(t), key, body, opts)
	if err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
	if etag == "" {
		t.Fatalf("Put(%q) returned an empty ETag", key)
	}
	return etag
}

func mustGet(t *testing.T, s store.Store, key string) store.Object {
	t.Helper()
	obj, err := s.Get(ctx(t), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return obj
}

func wantNotFound(t *testing.T, s store.Store, key string) {
	t.Helper()
	if obj, err := s.Get(ctx(t), key); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get(%q) = %q, %v; want ErrNotFound", key, obj.Body, err)
	}
}

func wantBody(t *testing.T, s store.Store, key, want string) store.Object {
	t.Helper()
	obj := mustGet(t, s, key)
	if string(obj.Body) != want {
		t.Fatalf("Get(%q) body = %q, want %q", key, obj.Body, want)
	}
	return obj
}

func testGetMissing(t *testing.T, s store.Store, base string) {
	wantNotFound(t, s, base+"missing.json")
	wantNotFound(t, s, base+"no/such/dir/object")
}

func testRoundTrip(t *testing.T, s store.Store, base string) {
	tests := []struct {
		name string
		key  string
		body []byte
		meta map[string]string
	}{
		{"with meta", base + "rooms/r1.json", []byte(`{"roomId":"r1"}`),
			map[string]string{"room-id": "r1", "note": "Hello, World! ~ 42"}},
		{"no meta", base + "rooms/r2.json", []byte("plain"), nil},
		{"empty body", base + "empty", []byte{}, nil},
		{"binary body", base + "bin", []byte{0, 1, 2, 0xff, '\n'}, map[string]string{"k": "v"}},
		{"dotted key", base + "openvidu-meet/recordings/.metadata/r/EG_1/u.json", []byte(`{}`),
			map[string]string{"x": "y"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			etag := mustPut(t, s, tc.key, tc.body, store.PutOptions{Meta: tc.meta})
			obj := wantBody(t, s, tc.key, string(tc.body))
			if obj.ETag != etag {
				t.Errorf("Get ETag = %q, Put returned %q", obj.ETag, etag)
			}
			if len(tc.meta) == 0 {
				if len(obj.Meta) != 0 {
					t.Errorf("Meta = %v, want none", obj.Meta)
				}
			} else if !maps.Equal(obj.Meta, tc.meta) {
				t.Errorf("Meta = %v, want %v", obj.Meta, tc.meta)
			}
		})
	}
}

func testCreateOnlyTwice(t *testing.T, s store.Store, base string) {
	key := base + "lock.json"
	etag := mustPut(t, s, key, []byte("first"), store.PutOptions{IfNoneMatch: true})
	_, err := s.Put(ctx(t), key, []byte("second"), store.PutOptions{IfNoneMatch: true})
	if !errors.Is(err, store.ErrPrecondition) {
		t.Fatalf("second create-only Put: err = %v, want ErrPrecondition", err)
	}
	if obj := wantBody(t, s, key, "first"); obj.ETag != etag {
		t.Errorf("ETag changed to %q after failed create, want %q", obj.ETag, etag)
	}
}

func testIfMatch(t *testing.T, s store.Store, base string) {
	key := base + "cas.json"
	v1 := mustPut(t, s, key, []byte("v1"), store.PutOptions{})
	v2 := mustPut(t, s, key, []byte("v2"), store.PutOptions{IfMatch: v1})
	if v2 == v1 {
		t.Fatalf("ETag did not change across different bodies: %q", v2)
	}
	wantBody(t, s, key, "v2")

	tests := []struct {
		name    string
		key     string
		ifMatch string
	}{
		{"stale etag", key, v1},
		{"missing key", base + "missing.json", v1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Put(ctx(t), tc.key, []byte("v3"), store.PutOptions{IfMatch: tc.ifMatch})
			if !errors.Is(err, store.ErrPrecondition) {
				t.Fatalf("Put IfMatch: err = %v, want ErrPrecondition", err)
			}
		})
	}
	wantBody(t, s, key, "v2")
	wantNotFound(t, s, base+"missing.json")
}

func testOverwrite(t *testing.T, s store.Store, base string) {
	key := base + "obj"
	e1 := mustPut(t, s, key, []byte("one"), store.PutOptions{Meta: map[string]string{"v": "1"}})
	e2 := mustPut(t, s, key, []byte("two"), store.PutOptions{})
	if e1 == e2 {
		t.Errorf("ETag did not change across different bodies: %q", e1)
	}
	obj := wantBody(t, s, key, "two")
	if obj.ETag != e2 {
		t.Errorf("ETag = %q, want %q", obj.ETag, e2)
	}
	if len(obj.Meta) != 0 {
		t.Errorf("Meta = %v after overwrite without Meta, want none", obj.Meta)
	}
	// Same body, new metadata: the metadata must follow the latest write.
	mustPut(t, s, key, []byte("two"), store.PutOptions{Meta: map[string]string{"v": "3"}})
	if obj := wantBody(t, s, key, "two"); obj.Meta["v"] != "3" {
		t.Errorf("Meta = %v, want v=3", obj.Meta)
	}
}

func testDeleteThenGet(t *testing.T, s store.Store, base string) {
	key := base + "a/b/c.json"
	mustPut(t, s, key, []byte("x"), store.PutOptions{Meta: map[string]string{"m": "1"}})
	if err := s.Delete(ctx(t), key); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	wantNotFound(t, s, key)
	// Recreating after delete starts from scratch: create-only works and
	// the old metadata does not come back.
	mustPut(t, s, key, []byte("x"), store.PutOptions{IfNoneMatch: true})
	if obj := wantBody(t, s, key, "x"); len(obj.Meta) != 0 {
		t.Errorf("Meta = %v after delete and recreate, want none", obj.Meta)
	}
}

func testDeleteMissing(t *testing.T, s store.Store, base string) {
	for _, key := range []string{base + "never-there", base + "no/such/dir/x"} {
		if err := s.Delete(ctx(t), key); err != nil {
			t.Errorf("Delete(%q) of missing key: %v", key, err)
		}
	}
}

func testListPrefix(t *testing.T, s store.Store, base string) {
	keys := []string{
		"rec/.metadata/r/EG_1/u.json",
		"rec/.metadata/r/EG_2/u.json",
		"rec/a.json",
		"rec/a/b.json",
		"rec/b",
		"recx/c",
		"other/d",
	}
	for _, k := range keys {
		mustPut(t, s, base+k, []byte(k), store.PutOptions{})
	}
	tests := []struct {
		prefix string
		want   []string
	}{
		{"rec/", []string{"rec/.metadata/r/EG_1/u.json", "rec/.metadata/r/EG_2/u.json", "rec/a.json", "rec/a/b.json", "rec/b"}},
		{"rec", []string{"rec/.metadata/r/EG_1/u.json", "rec/.metadata/r/EG_2/u.json", "rec/a.json", "rec/a/b.json", "rec/b", "recx/c"}},
		{"rec/.metadata/", []string{"rec/.metadata/r/EG_1/u.json", "rec/.metadata/r/EG_2/u.json"}},
		{"rec/.meta", []string{"rec/.metadata/r/EG_1/u.json", "rec/.metadata/r/EG_2/u.json"}},
		{"rec/.metadata/r/EG_1/u.json", []string{"rec/.metadata/r/EG_1/u.json"}},
		{"rec/a", []string{"rec/a.json", "rec/a/b.json"}},
		{"", []string{"other/d", "rec/.metadata/r/EG_1/u.json", "rec/.metadata/r/EG_2/u.json", "rec/a.json", "rec/a/b.json", "rec/b", "recx/c"}},
		{"nothing/", nil},
		{"rec/zzz", nil},
	}
	for _, tc := range tests {
		t.Run(strconv.Quote(tc.prefix), func(t *testing.T) {
			got, err := s.List(ctx(t), base+tc.prefix)
			if err != nil {
				t.Fatalf("List: %v", err)
			}
			var want []string
			for _, k := range tc.want {
				want = append(want, base+k)
			}
			if !slices.Equal(got, want) {
				t.Errorf("List(%q) =\n %q\nwant\n %q", base+tc.prefix, got, want)
			}
		})
	}

	if err := s.Delete(ctx(t), base+"rec/a/b.json"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	got, err := s.List(ctx(t), base+"rec/a")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if want := []string{base + "rec/a.json"}; !slices.Equal(got, want) {
		t.Errorf("List after delete = %q, want %q", got, want)
	}
}

func testConcurrentCreateOnly(t *testing.T, s store.Store, base string) {
	const n = 16
	key := base + "race.json"
	var (
		wg      sync.WaitGroup
		start   = make(chan struct{})
		errs    [n]error
		winners []int
		mu      sync.Mutex
	)
	for i := range n {
		wg.Go(func() {
			<-start
			_, err := s.Put(ctx(t), key, []byte(strconv.Itoa(i)), store.PutOptions{IfNoneMatch: true})
			errs[i] = err
			if err == nil {
				mu.Lock()
				winners = append(winners, i)
				mu.Unlock()
			}
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil && !errors.Is(err, store.ErrPrecondition) {
			t.Errorf("goroutine %d: err = %v, want nil or ErrPrecondition", i, err)
		}
	}
	if len(winners) != 1 {
		t.Fatalf("%d create-only writers succeeded (%v), want exactly 1", len(winners), winners)
	}
	wantBody(t, s, key, strconv.Itoa(winners[0]))
}

func testConcurrentCAS(t *testing.T, s store.Store, base string) {
	const workers, increments = 8, 20
	key := base + "counter"
	mustPut(t, s, key, []byte("0"), store.PutOptions{IfNoneMatch: true})

	var wg sync.WaitGroup
	errc := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for range increments {
				if err := increment(ctx(t), s, key); err != nil {
					errc <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	wantBody(t, s, key, strconv.Itoa(workers*increments))
}

// increment is the read-modify-CAS-retry loop the Meet logic uses on shared
// objects.
func increment(ctx context.Context, s store.Store, key string) error {
	for {
		obj, err := s.Get(ctx, key)
		if err != nil {
			return err
		}
		n, err := strconv.Atoi(string(obj.Body))
		if err != nil {
			return err
		}
		_, err = s.Put(ctx, key, []byte(strconv.Itoa(n+1)), store.PutOptions{IfMatch: obj.ETag})
		if errors.Is(err, store.ErrPrecondition) {
			continue
		}
		return err
	}
}
