package store_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lkedge/lkedge/host/store"
	"github.com/lkedge/lkedge/host/store/storetest"
)

const bucket = "openvidu"

func newFile(t *testing.T) (*store.File, string) {
	t.Helper()
	dir := t.TempDir()
	s, err := store.NewFile(dir, bucket)
	if err != nil {
		t.Fatalf("NewFile: %v", err)
	}
	return s, dir
}

func TestFileContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, _ := newFile(t)
		return s
	})
}

// filesUnder returns every regular file under root as slash paths relative
// to it, plus every directory that holds no file at all (a leftover).
func filesUnder(t *testing.T, root string) (files, emptyDirs []string) {
	t.Helper()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() {
			ents, err := os.ReadDir(p)
			if err != nil {
				return err
			}
			if len(ents) == 0 && rel != "." {
				emptyDirs = append(emptyDirs, filepath.ToSlash(rel))
			}
			return nil
		}
		files = append(files, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
	return files, emptyDirs
}

func TestFileLayoutMirrorsS3(t *testing.T) {
	s, dir := newFile(t)
	ctx := t.Context()
	keys := []string{
		"openvidu-meet/recordings/.metadata/r/EG_1/u.json",
		"openvidu-meet/recordings/r/EG_1/u.mp4",
		"openvidu-meet/rooms/room-1.json",
		"top",
	}
	for _, k := range keys {
		if _, err := s.Put(ctx, k, []byte("body of "+k), store.PutOptions{Meta: map[string]string{"owner": "me"}}); err != nil {
			t.Fatalf("Put(%q): %v", k, err)
		}
	}
	for _, k := range keys {
		p := filepath.Join(dir, bucket, filepath.FromSlash(k))
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("object %q not at %s: %v", k, p, err)
		}
		if string(got) != "body of "+k {
			t.Errorf("%s = %q", p, got)
		}
	}
	files, empty := filesUnder(t, filepath.Join(dir, bucket))
	slices.Sort(files)
	want := slices.Sorted(slices.Values(keys))
	if !slices.Equal(files, want) || len(empty) != 0 {
		t.Errorf("bucket tree holds files %q and empty dirs %q; want exactly %q", files, empty, want)
	}
	// The metadata lives in the sidecar tree, outside the bucket.
	sc := filepath.Join(dir, ".lkedge-meta", bucket, filepath.FromSlash(keys[0])+".json")
	if _, err := os.Stat(sc); err != nil {
		t.Errorf("sidecar for %q: %v", keys[0], err)
	}

	// Deleting everything leaves an empty (but present) bucket and no
	// leftover directories in either tree.
	for _, k := range keys {
		if err := s.Delete(ctx, k); err != nil {
			t.Fatalf("Delete(%q): %v", k, err)
		}
	}
	for _, root := range []string{filepath.Join(dir, bucket), filepath.Join(dir, ".lkedge-meta", bucket)} {
		files, empty := filesUnder(t, root)
		if len(files) != 0 || len(empty) != 0 {
			t.Errorf("%s after deleting all: files %q, empty dirs %q", root, files, empty)
		}
		if fi, err := os.Stat(root); err != nil || !fi.IsDir() {
			t.Errorf("%s removed by Delete: %v", root, err)
		}
	}
}

func TestFileBadKeys(t *testing.T) {
	s, dir := newFile(t)
	ctx := t.Context()
	tests := []struct {
		name string
		key  string
	}{
		{"empty", ""},
		{"absolute", "/etc/passwd"},
		{"dotdot", ".."},
		{"dotdot segment", "a/../../escape"},
		{"leading dotdot", "../escape"},
		{"dot", "."},
		{"dot segment", "a/./b"},
		{"empty segment", "a//b"},
		{"trailing slash", "a/b/"},
		{"NUL", "a\x00b"},
		{"temp prefix", "a/.lkedge-tmp-x"},
		{"too long", strings.Repeat("k", 1025)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			quoted := fmt.Sprintf("%q", tc.key)
			check := func(op string, err error) {
				t.Helper()
				if err == nil {
					t.Errorf("%s(%s) succeeded, want error", op, quoted)
					return
				}
				if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrPrecondition) {
					t.Errorf("%s(%s) = %v, want a key error", op, quoted, err)
				}
				if !strings.Contains(err.Error(), quoted) {
					t.Errorf("%s error %q does not name the key", op, err)
				}
			}
			_, err := s.Put(ctx, tc.key, []byte("x"), store.PutOptions{})
			check("Put", err)
			_, err = s.Get(ctx, tc.key)
			check("Get", err)
			check("Delete", s.Delete(ctx, tc.key))
		})
	}
	// Nothing escaped the bucket or landed in it.
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if want := []string{".lkedge-meta", bucket}; !slices.Equal(names, want) {
		t.Errorf("store dir holds %q, want %q", names, want)
	}
	if files, _ := filesUnder(t, filepath.Join(dir, bucket)); len(files) != 0 {
		t.Errorf("bad keys wrote files %q", files)
	}
}

func TestFileBadMeta(t *testing.T) {
	s, _ := newFile(t)
	tests := []struct {
		name string
		meta map[string]string
	}{
		{"upper case key", map[string]string{"Room": "x"}},
		{"empty key", map[string]string{"": "x"}},
		{"underscore key", map[string]string{"room_id": "x"}},
		{"newline value", map[string]string{"room": "a\nb"}},
		{"non-ASCII value", map[string]string{"room": "café"}},
		{"control value", map[string]string{"room": "a\x7f"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key := "meta/" + strings.ReplaceAll(tc.name, " ", "-")
			if _, err := s.Put(t.Context(), key, []byte("x"), store.PutOptions{Meta: tc.meta}); err == nil {
				t.Fatalf("Put with meta %q succeeded, want error", tc.meta)
			}
			if _, err := s.Get(t.Context(), key); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("object written despite bad meta: Get err = %v", err)
			}
		})
	}
}

func TestFileStaleSidecar(t *testing.T) {
	const key = "rooms/r1.json"
	meta := map[string]string{"v": "1"}
	tests := []struct {
		name string
		// damage simulates a crash or outside interference after a Put of
		// body "v1" with meta.
		damage func(t *testing.T, bodyPath, sidecarPath string)
	}{
		{"body replaced without sidecar", func(t *testing.T, bodyPath, _ string) {
			// A crash after the sidecar of some other write but before its
			// body; the sidecar describes a different body.
			if err := os.WriteFile(bodyPath, []byte("v2"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"sidecar for another etag", func(t *testing.T, _, sidecarPath string) {
			data := `{"etag":"\"00000000000000000000000000000000\"","meta":{"v":"stale"}}`
			if err := os.WriteFile(sidecarPath, []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"corrupt sidecar", func(t *testing.T, _, sidecarPath string) {
			if err := os.WriteFile(sidecarPath, []byte("{not json"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, dir := newFile(t)
			if _, err := s.Put(t.Context(), key, []byte("v1"), store.PutOptions{Meta: meta}); err != nil {
				t.Fatal(err)
			}
			tc.damage(t, filepath.Join(dir, bucket, key), filepath.Join(dir, ".lkedge-meta", bucket, key+".json"))
			obj, err := s.Get(t.Context(), key)
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			if len(obj.Meta) != 0 {
				t.Errorf("Meta = %v from a stale sidecar, want none", obj.Meta)
			}
		})
	}
}

func TestFilePutWithoutMetaRemovesSidecar(t *testing.T) {
	s, dir := newFile(t)
	ctx := t.Context()
	const key = "a/b.json"
	if _, err := s.Put(ctx, key, []byte("x"), store.PutOptions{Meta: map[string]string{"v": "1"}}); err != nil {
		t.Fatal(err)
	}
	// Same body, so only the sidecar could make stale Meta reappear.
	if _, err := s.Put(ctx, key, []byte("x"), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	sc := filepath.Join(dir, ".lkedge-meta", bucket, key+".json")
	if _, err := os.Stat(sc); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("sidecar still present after Put without Meta: %v", err)
	}
	if obj, err := s.Get(ctx, key); err != nil || len(obj.Meta) != 0 {
		t.Errorf("Get = Meta %v, err %v; want no Meta", obj.Meta, err)
	}
}

func TestFileReopen(t *testing.T) {
	s, dir := newFile(t)
	ctx := t.Context()
	etag, err := s.Put(ctx, "k", []byte("hello"), store.PutOptions{Meta: map[string]string{"a": "b"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := `"5d41402abc4b2a76b9719d911017c592"`; etag != want {
		t.Errorf("ETag = %s, want S3-style quoted MD5 %s", etag, want)
	}
	s2, err := store.NewFile(dir, bucket)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := s2.Get(ctx, "k")
	if err != nil || obj.ETag != etag || obj.Meta["a"] != "b" {
		t.Errorf("after reopen Get = %q %s %v, %v; want hello %s map[a:b]", obj.Body, obj.ETag, obj.Meta, err, etag)
	}
}

func TestFileListSkipsTempFiles(t *testing.T) {
	s, dir := newFile(t)
	ctx := t.Context()
	if _, err := s.Put(ctx, "d/k", []byte("x"), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	// A temp file left by a crash mid-write.
	if err := os.WriteFile(filepath.Join(dir, bucket, "d", ".lkedge-tmp-123"), []byte("partial"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, prefix := range []string{"", "d/", "d/.lkedge"} {
		got, err := s.List(ctx, prefix)
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		if strings.HasPrefix("d/k", prefix) {
			want = []string{"d/k"}
		}
		if !slices.Equal(got, want) {
			t.Errorf("List(%q) = %q, want %q", prefix, got, want)
		}
	}
}

func TestFileListOddPrefixes(t *testing.T) {
	s, _ := newFile(t)
	ctx := t.Context()
	if _, err := s.Put(ctx, "a/b", []byte("x"), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, prefix := range []string{"../", "../../", "/", "a//", "./a", "a/../", "\x00", "a/b/"} {
		got, err := s.List(ctx, prefix)
		if err != nil || len(got) != 0 {
			t.Errorf("List(%q) = %q, %v; want nothing", prefix, got, err)
		}
	}
}

func TestFileKeyFileDirConflict(t *testing.T) {
	s, _ := newFile(t)
	ctx := t.Context()
	if _, err := s.Put(ctx, "a", []byte("file"), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, "a/b", []byte("x"), store.PutOptions{}); err == nil {
		t.Error(`Put("a/b") with object "a" present succeeded; the file backend cannot hold both`)
	}
	if _, err := s.Get(ctx, "a/b"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf(`Get("a/b") = %v, want ErrNotFound`, err)
	}
	if err := s.Delete(ctx, "a/b"); err != nil {
		t.Errorf(`Delete("a/b") = %v, want nil`, err)
	}
	// Deleting under "a" must not prune the object "a" as if it were a directory.
	if obj, err := s.Get(ctx, "a"); err != nil || string(obj.Body) != "file" {
		t.Errorf(`Get("a") = %q, %v after Delete("a/b")`, obj.Body, err)
	}
	if _, err := s.Put(ctx, "d/e", []byte("x"), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "d"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf(`Get("d") where d is a directory = %v, want ErrNotFound`, err)
	}
	if err := s.Delete(ctx, "d"); err != nil {
		t.Errorf(`Delete("d") = %v`, err)
	}
	if _, err := s.Get(ctx, "d/e"); err != nil {
		t.Errorf(`Get("d/e") after Delete("d") = %v`, err)
	}
}

func TestFileCanceledContext(t *testing.T) {
	s, _ := newFile(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, errGet := s.Get(ctx, "k")
	_, errPut := s.Put(ctx, "k", nil, store.PutOptions{})
	_, errList := s.List(ctx, "")
	for op, err := range map[string]error{"Get": errGet, "Put": errPut, "Delete": s.Delete(ctx, "k"), "List": errList} {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with canceled ctx = %v, want context.Canceled", op, err)
		}
	}
}

func TestNewFileBadBucket(t *testing.T) {
	for _, b := range []string{"", ".lkedge-meta", "..", "a/b", `a\b`, "a\x00"} {
		if _, err := store.NewFile(t.TempDir(), b); err == nil {
			t.Errorf("NewFile(bucket %q) succeeded, want error", b)
		}
	}
	if _, err := store.NewFile("", "b"); err == nil {
		t.Error("NewFile with empty dir succeeded, want error")
	}
}

// TestFileMissText: a miss's error, made when read, names the key as the
// other errors do.
func TestFileMissText(t *testing.T) {
	s, _ := newFile(t)
	_, err := s.Get(t.Context(), `meet-x/rooms/r "7"/r.json`)
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get = %v, want ErrNotFound", err)
	}
	const want = `store: get "meet-x/rooms/r \"7\"/r.json": store: object not found`
	if got := err.Error(); got != want {
		t.Errorf("Error() = %s\nwant      %s", got, want)
	}
}
