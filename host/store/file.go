package store

import (
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Names the file backend reserves. Both start with '.', which no S3 bucket
// name may, so neither can collide with a bucket directory.
const (
	// tempPrefix starts the name of every file being written; List skips
	// such files and keys may not use it as a path segment, so a write in
	// progress (or left by a crash) is never mistaken for an object.
	tempPrefix = ".lkedge-tmp-"
	// metaDirName is the sidecar tree under dir that holds user metadata,
	// kept outside the bucket tree so the bucket tree mirrors S3 exactly.
	metaDirName = ".lkedge-meta"
	// maxKeyLen is S3's limit on object key length, enforced here too so a
	// key that works on one machine also works against S3.
	maxKeyLen = 1024
	// lockStripes is the number of per-key locks; keys hash onto them so
	// writers of different keys rarely wait for each other.
	lockStripes = 64
)

// File is the single-machine Store: each object is a plain file at
// <dir>/<bucket>/<key>, so the directory tree mirrors the S3 bucket byte for
// byte and can be synced to or from S3 with ordinary tools.
//
// A File serves ONE process. Conditional writes (IfNoneMatch, IfMatch) are
// atomic only among the goroutines of the process that holds the File; two
// processes sharing a directory can both win a create-only race. Run several
// replicas against the S3 backend instead.
//
// The filesystem cannot hold a file and a directory under one name, so unlike
// S3 the file backend cannot store both key "a" and key "a/b": the second Put
// returns an error. For the same reason, in the metadata sidecar tree (where
// key K's metadata is <K>.json) key "a" with Meta conflicts with any key under
// "a.json/" with Meta.
type File struct {
	bucketDir  string // <dir>/<bucket>: root of the object tree
	metaBucket string // <dir>/.lkedge-meta/<bucket>: root of the sidecar tree

	// tree orders writers against Delete: Put, Get and List hold it shared;
	// Delete holds it exclusively because pruning empty directories would
	// otherwise race with a Put creating a file in one of them.
	tree sync.RWMutex
	// keys makes a conditional check and the write it guards one atomic step,
	// and keeps Get from reading a body and a sidecar of different writes.
	keys [lockStripes]sync.RWMutex
}

// sidecar is the JSON stored at <dir>/.lkedge-meta/<bucket>/<key>.json. ETag
// names the body the metadata belongs to; Get ignores a sidecar whose ETag
// differs from the body's, so a crash between writing the sidecar and the body
// can never attach stale metadata to another body.
type sidecar struct {
	ETag string            `json:"etag"`
	Meta map[string]string `json:"meta"`
}

var _ Store = (*File)(nil)

// NewFile opens (creating if missing) the file store for bucket under dir.
// The bucket must be usable as an S3 bucket name's single path segment: not
// empty, no '/' or '\\', no NUL, not starting with '.'.
func NewFile(dir, bucket string) (*File, error) {
	if dir == "" {
		return nil, errors.New("store: file backend: empty directory")
	}
	if err := validBucket(bucket); err != nil {
		return nil, err
	}
	f := &File{
		bucketDir:  filepath.Join(dir, bucket),
		metaBucket: filepath.Join(dir, metaDirName, bucket),
	}
	for _, d := range []string{f.bucketDir, f.metaBucket} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("store: file backend: create %s: %w", d, err)
		}
	}
	// Make the new directory entries durable before anything relies on them.
	for _, d := range []string{dir, filepath.Join(dir, metaDirName)} {
		if err := syncDir(d); err != nil {
			return nil, fmt.Errorf("store: file backend: %w", err)
		}
	}
	return f, nil
}

func validBucket(bucket string) error {
	switch {
	case bucket == "":
		return errors.New("store: file backend: empty bucket name")
	case strings.HasPrefix(bucket, "."),
		strings.ContainsAny(bucket, "/\\\x00"):
		return fmt.Errorf("store: file backend: invalid bucket name %q", bucket)
	}
	return nil
}

// validKey is the key check of the file backend: it reports why key cannot
// name a file inside the bucket directory without escaping it or aliasing
// another key. Keys are rejected when empty, longer than 1024 bytes (S3's
// limit), absolute, ending in '/', containing NUL, or containing an empty,
// "." or ".." segment or a segment starting with the reserved ".lkedge-tmp-".
func validKey(key string) error {
	bad := func(why string) error {
		return fmt.Errorf("%w %q: %s", ErrInvalidKey, key, why)
	}
	switch {
	case key == "":
		return bad("empty")
	case len(key) > maxKeyLen:
		return bad(fmt.Sprintf("longer than %d bytes", maxKeyLen))
	case strings.IndexByte(key, 0) >= 0:
		return bad("contains NUL")
	case strings.HasPrefix(key, "/"):
		return bad("absolute")
	case strings.HasSuffix(key, "/"):
		return bad("ends in '/'")
	case os.PathSeparator != '/' && strings.ContainsRune(key, os.PathSeparator):
		return bad("contains the OS path separator")
	}
	for seg := range strings.SplitSeq(key, "/") {
		switch {
		case seg == "":
			return bad("empty path segment")
		case seg == "." || seg == "..":
			return bad(fmt.Sprintf("%q path segment", seg))
		case strings.HasPrefix(seg, tempPrefix):
			return bad("segment uses the reserved prefix " + tempPrefix)
		}
	}
	return nil
}

// validMeta enforces the PutOptions.Meta rules so metadata accepted here is
// also accepted as S3 x-amz-meta-* headers.
func validMeta(meta map[string]string) error {
	for k, v := range meta {
		if k == "" {
			return errors.New("store: invalid meta: empty key")
		}
		for i := 0; i < len(k); i++ {
			c := k[i]
			if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
				return fmt.Errorf("store: invalid meta key %q: only a-z, 0-9 and '-' allowed", k)
			}
		}
		for i := 0; i < len(v); i++ {
			if c := v[i]; c < 0x20 || c > 0x7e {
				return fmt.Errorf("store: invalid meta value for %q: only printable ASCII allowed", k)
			}
		}
	}
	return nil
}

// etagOf is S3's ETag for a single-part upload: the quoted hex MD5 of the
// body. Computed from content, it is stable across restarts.
func etagOf(body []byte) string {
	sum := md5.Sum(body)
	return `"` + hex.EncodeToString(sum[:]) + `"`
}

// sameETag compares ETags ignoring the surrounding quotes, which S3 clients
// are inconsistent about.
func sameETag(a, b string) bool {
	return strings.Trim(a, `"`) == strings.Trim(b, `"`)
}

func (f *File) keyLock(key string) *sync.RWMutex {
	h := fnv.New32a()
	h.Write([]byte(key))
	return &f.keys[h.Sum32()%lockStripes]
}

func (f *File) bodyPath(key string) string {
	return filepath.Join(f.bucketDir, filepath.FromSlash(key))
}

func (f *File) sidecarRel(key string) string { return key + ".json" }

// Get reads the object under key. Meta is returned only when the sidecar was
// written for this exact body.
func (f *File) Get(ctx context.Context, key string) (Object, error) {
	if err := ctx.Err(); err != nil {
		return Object{}, err
	}
	if err := validKey(key); err != nil {
		return Object{}, err
	}
	f.tree.RLock()
	defer f.tree.RUnlock()
	l := f.keyLock(key)
	l.RLock()
	defer l.RUnlock()

	body, err := readRegular(f.bodyPath(key))
	if err != nil {
		if isMissing(err) {
			return Object{}, &missError{key}
		}
		return Object{}, fmt.Errorf("store: get %q: %w", key, err)
	}
	obj := Object{Body: body, ETag: etagOf(body)}
	sc, err := f.readSidecar(key)
	if err != nil {
		return Object{}, fmt.Errorf("store: get %q: %w", key, err)
	}
	if sc != nil && sameETag(sc.ETag, obj.ETag) && len(sc.Meta) > 0 {
		obj.Meta = sc.Meta
	}
	return obj, nil
}

// readSidecar returns nil, nil when there is no usable sidecar. A sidecar
// that cannot be parsed is treated as absent: it can only come from outside
// interference, and the object itself is still readable.
func (f *File) readSidecar(key string) (*sidecar, error) {
	data, err := readRegular(filepath.Join(f.metaBucket, filepath.FromSlash(f.sidecarRel(key))))
	if err != nil {
		if isMissing(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("read metadata: %w", err)
	}
	var sc sidecar
	if json.Unmarshal(data, &sc) != nil {
		return nil, nil
	}
	return &sc, nil
}

// Put writes body under key atomically and durably. The sidecar (or its
// removal) happens before the body so that the metadata on disk never
// describes a body it was not written for.
func (f *File) Put(ctx context.Context, key string, body []byte, opts PutOptions) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if err := validKey(key); err != nil {
		return "", err
	}
	if err := validMeta(opts.Meta); err != nil {
		return "", fmt.Errorf("store: put %q: %w", key, err)
	}
	f.tree.RLock()
	defer f.tree.RUnlock()
	l := f.keyLock(key)
	l.Lock()
	defer l.Unlock()

	if opts.IfNoneMatch || opts.IfMatch != "" {
		cur, err := readRegular(f.bodyPath(key))
		exists := err == nil
		if err != nil && !isMissing(err) {
			return "", fmt.Errorf("store: put %q: read current: %w", key, err)
		}
		if opts.IfNoneMatch && exists {
			return "", fmt.Errorf("store: put %q: object exists: %w", key, ErrPrecondition)
		}
		if opts.IfMatch != "" {
			if !exists {
				return "", fmt.Errorf("store: put %q: if-match %s: object missing: %w", key, opts.IfMatch, ErrPrecondition)
			}
			if opts.IfMatch != "*" && !sameETag(opts.IfMatch, etagOf(cur)) {
				return "", fmt.Errorf("store: put %q: if-match %s: object changed: %w", key, opts.IfMatch, ErrPrecondition)
			}
		}
	}

	etag := etagOf(body)
	if len(opts.Meta) > 0 {
		data, err := json.Marshal(sidecar{ETag: etag, Meta: opts.Meta})
		if err != nil {
			return "", fmt.Errorf("store: put %q: encode metadata: %w", key, err)
		}
		if err := writeAtomic(f.metaBucket, f.sidecarRel(key), data); err != nil {
			return "", fmt.Errorf("store: put %q: write metadata: %w", key, err)
		}
	} else if err := removeRegular(f.metaBucket, f.sidecarRel(key)); err != nil {
		return "", fmt.Errorf("store: put %q: remove stale metadata: %w", key, err)
	}
	if err := writeAtomic(f.bucketDir, key, body); err != nil {
		return "", fmt.Errorf("store: put %q: %w", key, err)
	}
	return etag, nil
}

// Delete removes the object and its metadata, then the directories left
// empty, since S3 has no directories and the tree should not keep ghosts.
func (f *File) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := validKey(key); err != nil {
		return err
	}
	f.tree.Lock()
	defer f.tree.Unlock()

	// Body first: the object vanishes in one step. A crash before the
	// sidecar is removed leaves an orphan that no body matches and that the
	// next Put or Delete of the key cleans up.
	if err := removeRegular(f.bucketDir, key); err != nil {
		return fmt.Errorf("store: delete %q: %w", key, err)
	}
	if err := removeRegular(f.metaBucket, f.sidecarRel(key)); err != nil {
		return fmt.Errorf("store: delete %q: remove metadata: %w", key, err)
	}
	if err := pruneDirs(f.bucketDir, key); err != nil {
		return fmt.Errorf("store: delete %q: %w", key, err)
	}
	if err := pruneDirs(f.metaBucket, f.sidecarRel(key)); err != nil {
		return fmt.Errorf("store: delete %q: metadata: %w", key, err)
	}
	return nil
}

// List returns the keys starting with prefix in lexical order. It walks only
// the directory named by prefix up to its last '/', and skips subdirectories
// that cannot hold a match.
func (f *File) List(ctx context.Context, prefix string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	dirPart := prefix[:strings.LastIndexByte(prefix, '/')+1] // "" or ends in '/'
	if dirPart != "" && validKey(strings.TrimSuffix(dirPart, "/")) != nil {
		// No valid key can start with a prefix whose directory part is not
		// itself a valid key path; answering empty also keeps "../" and the
		// like from walking outside the bucket.
		return nil, nil
	}
	if strings.IndexByte(prefix, 0) >= 0 {
		return nil, nil
	}
	f.tree.RLock()
	defer f.tree.RUnlock()

	root := filepath.Join(f.bucketDir, filepath.FromSlash(dirPart))
	var keys []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if isMissing(err) {
				return nil // root absent: nothing under this prefix
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		key := dirPart + filepath.ToSlash(rel)
		if d.IsDir() {
			// Enter a directory only if keys under it can start with prefix.
			sub := key + "/"
			if !strings.HasPrefix(sub, prefix) && !strings.HasPrefix(prefix, sub) {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || strings.HasPrefix(d.Name(), tempPrefix) {
			return nil
		}
		if strings.HasPrefix(key, prefix) {
			keys = append(keys, key)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: list %q: %w", prefix, err)
	}
	// WalkDir's order is per directory ("a/b" before "a.b"), not lexical
	// over whole keys ('.' sorts before '/').
	sort.Strings(keys)
	return keys, nil
}

// isMissing reports whether err means "no object here": the path is absent,
// a path component is a file, or the path is a directory.
// missError is Get's answer for a key with no object. Meet's ownership
// check asks for a room record that most rooms lack, so misses are common,
// and the caller only tests for ErrNotFound: the text is made when read.
type missError struct{ key string }

func (e *missError) Error() string {
	return "store: get " + strconv.Quote(e.key) + ": " + ErrNotFound.Error()
}

func (e *missError) Unwrap() error { return ErrNotFound }

func isMissing(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) ||
		errors.Is(err, syscall.EISDIR) || errors.Is(err, errIsDir)
}

var errIsDir = errors.New("is a directory")

// readRegular reads a regular file; a directory counts as missing.
func readRegular(p string) ([]byte, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: %w", p, errIsDir)
	}
	return os.ReadFile(p)
}

// writeAtomic replaces root/rel with data: temp file in the same directory,
// fsync, rename over the target, fsync the directory. Missing parent
// directories are created, each made durable in its parent.
func writeAtomic(root, rel string, data []byte) error {
	target := filepath.Join(root, filepath.FromSlash(rel))
	dir := filepath.Dir(target)
	if err := mkdirAllSync(root, path.Dir(rel)); err != nil {
		return err
	}
	tmp, err := createTemp(dir)
	if err != nil {
		return err
	}
	tmpName := tmp.Name()
	committed := false
	defer func() {
		if !committed {
			tmp.Close()
			os.Remove(tmpName)
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", tmpName, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", tmpName, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmpName, err)
	}
	if err := os.Rename(tmpName, target); err != nil {
		return fmt.Errorf("rename into place: %w", err)
	}
	committed = true
	return syncDir(dir)
}

// createTemp creates an exclusive temp file named tempPrefix+random in dir,
// with the umask applied (unlike os.CreateTemp's fixed 0600) so objects get
// the same permissions as other files the process writes.
func createTemp(dir string) (*os.File, error) {
	var rnd [8]byte
	for range 10 {
		rand.Read(rnd[:])
		p := filepath.Join(dir, tempPrefix+hex.EncodeToString(rnd[:]))
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("create temp file: %w", err)
		}
		return f, nil
	}
	return nil, fmt.Errorf("create temp file in %s: too many collisions", dir)
}

// mkdirAllSync creates root/relDir segment by segment, fsyncing the parent of
// each directory it creates so the new entries survive a crash.
func mkdirAllSync(root, relDir string) error {
	if relDir == "." || relDir == "" {
		return nil
	}
	if fi, err := os.Stat(filepath.Join(root, filepath.FromSlash(relDir))); err == nil && fi.IsDir() {
		return nil
	}
	cur := root
	for seg := range strings.SplitSeq(relDir, "/") {
		next := filepath.Join(cur, seg)
		err := os.Mkdir(next, 0o755)
		switch {
		case err == nil:
			if err := syncDir(cur); err != nil {
				return err
			}
		case errors.Is(err, fs.ErrExist):
			// Exists already; if it is a file, the next step reports it.
		default:
			return fmt.Errorf("create directory: %w", err)
		}
		cur = next
	}
	return nil
}

// removeRegular removes root/rel if it is a regular file and makes the
// removal durable. A missing file (or a directory in its place) is not an error.
func removeRegular(root, rel string) error {
	p := filepath.Join(root, filepath.FromSlash(rel))
	fi, err := os.Lstat(p)
	if err != nil {
		if isMissing(err) {
			return nil
		}
		return fmt.Errorf("stat: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil
	}
	if err := os.Remove(p); err != nil {
		if isMissing(err) {
			return nil
		}
		return fmt.Errorf("remove: %w", err)
	}
	return syncDir(filepath.Dir(p))
}

// pruneDirs removes the now-empty parent directories of root/rel, deepest
// first, stopping at the first one that is not empty and never removing root.
func pruneDirs(root, rel string) error {
	removed := ""
	for d := path.Dir(rel); d != "." && d != "/"; d = path.Dir(d) {
		p := filepath.Join(root, filepath.FromSlash(d))
		// Only ever remove a directory: when a key "a/b" is deleted while
		// "a" is an object, "a" is a file and must survive.
		if fi, err := os.Lstat(p); err != nil || !fi.IsDir() {
			break
		}
		if err := os.Remove(p); err != nil {
			break // not empty: stop here
		}
		removed = p
	}
	if removed == "" {
		return nil
	}
	return syncDir(filepath.Dir(removed))
}

// syncDir fsyncs a directory so entries created, renamed or removed in it
// are durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory for sync: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
