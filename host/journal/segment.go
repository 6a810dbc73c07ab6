package journal

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// The journal is a directory of append-only segment files plus one file of
// failed records:
//
//	DIR/00000000000000000001.wal   segment whose first seq is 1
//	DIR/00000000000000004242.wal   the next one, and so on; the last is active
//	DIR/failed.wal                 records whose processing was given up
//	DIR/LOCK                       held (flock) by the process using DIR
//
// Every file starts with an 8-byte magic and holds frames:
//
//	frame = crc32c(4, BE, over everything after it) | len(payload)(4, BE) |
//	        kind(1) | seq(8, BE) | at unix ms(8, BE) | payload
//
// kind append: payload = record (encoding.go); at = when it was recorded
// kind done:   payload = empty
// kind fail:   payload = failed record (encoding.go); at = when it failed
//
// A segment is deleted once every record in it is done or failed and its
// newest id has left the dedup window, oldest segment first, so the files
// left always replay to the same state.
//
// The active segment is written ahead with zeros (zeroChunk at a time), so
// that a commit overwrites space the file already has: its fdatasync then
// flushes only data, not the file's size and block allocation through the
// file system's journal. On this project's VMs that takes about a third
// off both the latency and the CPU of a 3 KiB commit (BenchmarkCommitSpace).
// No frame starts with a zeroed header (kinds start at 1), so reading stops
// there: errZeroTail.
const (
	segmentMagic = "LKJWAL01"
	failedName   = "failed.wal"
	lockName     = "LOCK"
	segmentExt   = ".wal"
	frameHdrLen  = 4 + 4 + 1 + 8 + 8
	// defaultSegmentSize is where the active segment is rolled over.
	defaultSegmentSize = 64 << 20
	// maxPayload bounds a frame read back, so a corrupt length cannot make
	// a scan allocate without limit.
	maxPayload = 64 << 20
	// zeroChunk is how far ahead of the commits the active segment is
	// zero-filled. The commit that comes within half of it of the filled
	// end pays the next fill: one write of this size, and an fdatasync
	// that also commits the file's new size.
	zeroChunk = 1 << 20
)

type frameKind uint8

const (
	frameAppend frameKind = iota + 1
	frameDone
	frameFail
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// appendFrame encodes one frame onto buf.
func appendFrame(buf []byte, kind frameKind, seq uint64, ms int64, payload []byte) []byte {
	start := len(buf)
	buf = be.AppendUint32(buf, 0) // crc, filled in below
	buf = be.AppendUint32(buf, uint32(len(payload)))
	buf = append(buf, byte(kind))
	buf = be.AppendUint64(buf, seq)
	buf = be.AppendUint64(buf, uint64(ms))
	buf = append(buf, payload...)
	be.PutUint32(buf[start:], crc32.Checksum(buf[start+4:], castagnoli))
	return buf
}

// frame is one decoded frame; off is where its payload starts in the file.
type frame struct {
	kind    frameKind
	seq     uint64
	ms      int64
	payload []byte
	off     int64
}

// errTorn marks the end of the readable frames of a file: a short or
// checksum-failing frame, as a crash in the middle of a write leaves.
var errTorn = errors.New("torn or corrupt frame")

// errZeroTail marks the end of the frames of the active segment where its
// zero-filled space starts. Only the last segment has such a tail; in an
// older one it is damage like any other unreadable frame.
var errZeroTail = fmt.Errorf("%w: zero-filled space", errTorn)

// scanFrames reads the frames of f from its start, calling fn for each. It
// returns the offset just after the last good frame; err is errTorn (wrapped)
// when bytes after that offset do not form a frame, nil at a clean end.
func scanFrames(f File, fn func(frame) error) (good int64, err error) {
	r := bufio.NewReaderSize(io.NewSectionReader(f, 0, math.MaxInt64), 256<<10)
	magic := make([]byte, len(segmentMagic))
	if _, err := io.ReadFull(r, magic); err != nil {
		if errors.Is(err, io.EOF) {
			return 0, nil // empty file: a crash right after creating it
		}
		return 0, fmt.Errorf("%w: short magic", errTorn)
	}
	if string(magic) != segmentMagic {
		return 0, fmt.Errorf("not a journal file (magic %q)", magic)
	}
	off := int64(len(segmentMagic))
	var hdr [frameHdrLen]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return off, nil
			}
			return off, fmt.Errorf("%w at offset %d: short header", errTorn, off)
		}
		if hdr == ([frameHdrLen]byte{}) {
			return off, fmt.Errorf("%w at offset %d", errZeroTail, off)
		}
		n := be.Uint32(hdr[4:8])
		if n > maxPayload {
			return off, fmt.Errorf("%w at offset %d: payload length %d", errTorn, off, n)
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(r, payload); err != nil {
			return off, fmt.Errorf("%w at offset %d: short payload", errTorn, off)
		}
		crc := crc32.Update(crc32.Checksum(hdr[4:], castagnoli), castagnoli, payload)
		if crc != be.Uint32(hdr[:4]) {
			return off, fmt.Errorf("%w at offset %d: checksum mismatch", errTorn, off)
		}
		fr := frame{
			kind:    frameKind(hdr[8]),
			seq:     be.Uint64(hdr[9:17]),
			ms:      int64(be.Uint64(hdr[17:25])),
			payload: payload,
			off:     off + frameHdrLen,
		}
		if err := fn(fr); err != nil {
			return off, err
		}
		off += frameHdrLen + int64(n)
	}
}

// segment is one segment file and what the journal tracks about it.
type segment struct {
	first      uint64 // seq in its name
	path       string
	f          File
	size       int64 // where the next frame goes
	zeroed     int64 // the file is zero-filled from size up to here
	unresolved int   // appends neither done nor failed
	maxMs      int64 // newest append's time: when its ids leave the window
}

func segmentName(first uint64) string { return fmt.Sprintf("%020d%s", first, segmentExt) }

// listSegments returns the segment files of dir by first seq.
func listSegments(fsys FS, dir string) ([]*segment, error) {
	entries, err := fsys.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var segs []*segment
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || name == failedName || !strings.HasSuffix(name, segmentExt) {
			continue
		}
		first, err := strconv.ParseUint(strings.TrimSuffix(name, segmentExt), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("unexpected file %s in the journal directory", name)
		}
		segs = append(segs, &segment{first: first, path: filepath.Join(dir, name)})
	}
	slices.SortFunc(segs, func(a, b *segment) int { return cmp.Compare(a.first, b.first) })
	return segs, nil
}

// createFile creates a journal file with its magic, durably: the file and
// its directory entry are synced before it is used.
func createFile(fsys FS, path string) (File, error) {
	f, err := fsys.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	if _, err := f.WriteAt([]byte(segmentMagic), 0); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, err
	}
	if err := fsys.SyncDir(filepath.Dir(path)); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// zeros is the source of zero fills.
var zeros = make([]byte, zeroChunk)

// zeroFill writes zeros to f from off to end; the caller's next fdatasync
// makes them durable along with its data.
func zeroFill(f File, off, end int64) error {
	for off < end {
		n := min(end-off, int64(len(zeros)))
		if _, err := f.WriteAt(zeros[:n], off); err != nil {
			return err
		}
		off += n
	}
	return nil
}

// readAt reads n bytes at off of f.
func readAt(f File, off int64, n uint32) ([]byte, error) {
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		return nil, err
	}
	return b, nil
}
