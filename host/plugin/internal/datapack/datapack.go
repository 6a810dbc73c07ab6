// Package datapack merges a WebAssembly module's data segments where only a
// short run of zero bytes lies between them.
//
// Go's linker writes a module's initial memory as one data segment per run
// of non-zero bytes: tens of thousands of segments of about 25 bytes each
// for a small plugin. wazero keeps a segment as a Go value with its own
// offset expression, evaluates that expression at every instantiation, and
// gives every instance a slice header per segment, so for a Go guest the
// segments cost several times the bytes they hold, on the heap, for as long
// as the plugin is loaded. Filling the short gaps with the zeros the memory
// holds anyway makes a few large segments of the same initial memory.
package datapack

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
)

// maxGap is the longest run of zero bytes Pack writes to join two segments.
// A segment costs wazero about 80 bytes per module and 24 per instance, so
// joining across a gap this short never costs more than it saves; and a gap
// this short never spans a whole page of memory the original left untouched.
// The same bound caps what a hostile module can make Pack allocate: no more
// than the segments it merges would cost wazero anyway (and its validation,
// which runs first, has paid that already).
const maxGap = 64

// Section ids and the one form of segment Pack rewrites.
const (
	secMemory    = 5
	secData      = 11
	secDataCount = 12

	activeMemory0 = 0x00 // an active segment of memory 0, offset expression follows
	opI32Const    = 0x41
	opEnd         = 0x0B
)

var errTruncated = errors.New("truncated")

// Pack returns wasm with each run of consecutive data segments that lie in
// ascending order, at most maxGap bytes apart, merged into one segment. It
// returns wasm itself when merging could be seen by the module, which it
// can only rule out when
//
//   - the module defines its one memory, so the bytes between segments are
//     zeros at instantiation, not an importer's data;
//   - it has no data count section, without which no instruction can name
//     a segment (memory.init, data.drop), so their number and order are
//     unobservable;
//   - every segment is active in that memory at an i32.const offset;
//
// and it joins two segments only when no other segment writes into the gap
// between them, which the zeros written by the merged one would overwrite.
//
// Instantiation then fails exactly when the original's does: within a run,
// a merged segment runs past the memory exactly when its last original
// segment does. Pack expects a module wazero has validated; it returns an
// error only for one whose sections or data it cannot read.
func Pack(wasm []byte) ([]byte, error) {
	if len(wasm) < 8 {
		return nil, errTruncated
	}
	secs, err := sections(wasm[8:])
	if err != nil {
		return nil, err
	}
	data := -1
	memories := uint64(0)
	for i, s := range secs {
		switch s.id {
		case secDataCount:
			return wasm, nil
		case secMemory:
			r := reader{b: s.payload}
			if memories, err = r.u32(); err != nil {
				return nil, fmt.Errorf("memory section: %w", err)
			}
		case secData:
			data = i
		}
	}
	if data < 0 || memories != 1 {
		return wasm, nil
	}
	segs, ok, err := segments(secs[data].payload)
	if err != nil {
		return nil, fmt.Errorf("data section: %w", err)
	}
	if !ok || len(segs) < 2 {
		return wasm, nil
	}
	merged := merge(segs)
	if len(merged) == len(segs) {
		return wasm, nil
	}
	secs[data].payload = encode(merged)

	out := append(make([]byte, 0, len(wasm)), wasm[:8]...)
	for _, s := range secs {
		out = append(out, s.id)
		out = appendU32(out, uint64(len(s.payload)))
		out = append(out, s.payload...)
	}
	return out, nil
}

type section struct {
	id      byte
	payload []byte
}

func sections(b []byte) ([]section, error) {
	var secs []section
	r := reader{b: b}
	for r.off < len(r.b) {
		id, err := r.byte()
		if err != nil {
			return nil, err
		}
		n, err := r.u32()
		if err != nil {
			return nil, fmt.Errorf("section %d: %w", id, err)
		}
		p, err := r.bytes(n)
		if err != nil {
			return nil, fmt.Errorf("section %d: %w", id, err)
		}
		secs = append(secs, section{id, p})
	}
	return secs, nil
}

// segment is an active segment of memory 0 at a constant offset.
type segment struct {
	offset uint64 // the i32.const, read as the unsigned address it is
	init   []byte
}

func (s segment) end() uint64 { return s.offset + uint64(len(s.init)) }

// segments reads the data section. ok is false when a segment is of
// another form than Pack rewrites.
func segments(p []byte) (segs []segment, ok bool, err error) {
	r := reader{b: p}
	n, err := r.u32()
	if err != nil {
		return nil, false, err
	}
	if n > uint64(len(p)) { // each segment takes bytes; refuse before allocating
		return nil, false, errTruncated
	}
	segs = make([]segment, 0, n)
	for i := range n {
		flags, err := r.u32()
		if err != nil {
			return nil, false, fmt.Errorf("segment %d: %w", i, err)
		}
		if flags != activeMemory0 {
			return nil, false, nil
		}
		op, err := r.byte()
		if err != nil {
			return nil, false, fmt.Errorf("segment %d: %w", i, err)
		}
		if op != opI32Const {
			return nil, false, nil // global.get, or an extended constant expression
		}
		off, err := r.s32()
		if err != nil {
			return nil, false, fmt.Errorf("segment %d: %w", i, err)
		}
		if end, err := r.byte(); err != nil || end != opEnd {
			return nil, false, nil
		}
		size, err := r.u32()
		if err != nil {
			return nil, false, fmt.Errorf("segment %d: %w", i, err)
		}
		init, err := r.bytes(size)
		if err != nil {
			return nil, false, fmt.Errorf("segment %d: %w", i, err)
		}
		segs = append(segs, segment{offset: uint64(uint32(off)), init: init})
	}
	if r.off != len(p) {
		return nil, false, errors.New("trailing bytes")
	}
	return segs, true, nil
}

// merge joins each segment to the one before it when it starts at most
// maxGap bytes after that one's end and no segment writes into the gap.
func merge(segs []segment) []segment {
	written := coverage(segs)
	var out []segment
	for i := 0; i < len(segs); {
		j := i + 1
		for ; j < len(segs); j++ {
			gapStart, gapEnd := segs[j-1].end(), segs[j].offset
			if gapEnd < gapStart || gapEnd-gapStart > maxGap ||
				(gapEnd > gapStart && written(gapStart, gapEnd)) {
				break
			}
		}
		if j == i+1 {
			out = append(out, segs[i])
			i = j
			continue
		}
		init := make([]byte, segs[j-1].end()-segs[i].offset)
		for _, s := range segs[i:j] {
			copy(init[s.offset-segs[i].offset:], s.init)
		}
		out = append(out, segment{offset: segs[i].offset, init: init})
		i = j
	}
	return out
}

// coverage returns a test of whether any segment may write a byte in
// [start, end). It may answer yes for an empty segment inside the range,
// which only leaves a gap unfilled.
func coverage(segs []segment) func(start, end uint64) bool {
	byOffset := slices.Clone(segs)
	slices.SortFunc(byOffset, func(a, b segment) int { return cmp.Compare(a.offset, b.offset) })
	// maxEnd[k] is the furthest end among the k segments of lowest offset.
	maxEnd := make([]uint64, len(byOffset)+1)
	for k, s := range byOffset {
		maxEnd[k+1] = max(maxEnd[k], s.end())
	}
	return func(start, end uint64) bool {
		k, _ := slices.BinarySearchFunc(byOffset, end, func(s segment, t uint64) int { return cmp.Compare(s.offset, t) })
		return maxEnd[k] > start // a segment starting before end reaches past start
	}
}

func encode(segs []segment) []byte {
	size := 5
	for _, s := range segs {
		size += 16 + len(s.init)
	}
	out := appendU32(make([]byte, 0, size), uint64(len(segs)))
	for _, s := range segs {
		out = append(out, activeMemory0, opI32Const)
		out = appendS32(out, int32(uint32(s.offset)))
		out = append(out, opEnd)
		out = appendU32(out, uint64(len(s.init)))
		out = append(out, s.init...)
	}
	return out
}

func appendU32(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

func appendS32(b []byte, v int32) []byte {
	for {
		c := byte(v & 0x7F)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

type reader struct {
	b   []byte
	off int
}

func (r *reader) byte() (byte, error) {
	if r.off >= len(r.b) {
		return 0, errTruncated
	}
	c := r.b[r.off]
	r.off++
	return c, nil
}

func (r *reader) bytes(n uint64) ([]byte, error) {
	if n > uint64(len(r.b)-r.off) {
		return nil, errTruncated
	}
	p := r.b[r.off : r.off+int(n)]
	r.off += int(n)
	return p, nil
}

// u32 reads an unsigned LEB128 number of at most five bytes.
func (r *reader) u32() (uint64, error) {
	var v uint64
	for i := range 5 {
		c, err := r.byte()
		if err != nil {
			return 0, err
		}
		v |= uint64(c&0x7F) << (7 * i)
		if c&0x80 == 0 {
			if v > 0xFFFFFFFF {
				return 0, errors.New("number past 32 bits")
			}
			return v, nil
		}
	}
	return 0, errors.New("LEB128 number too long")
}

// s32 reads a signed LEB128 number of at most five bytes.
func (r *reader) s32() (int32, error) {
	var v int64
	for i := range 5 {
		c, err := r.byte()
		if err != nil {
			return 0, err
		}
		v |= int64(c&0x7F) << (7 * i)
		if c&0x80 == 0 {
			if shift := 7 * (i + 1); shift < 64 && c&0x40 != 0 {
				v |= -1 << shift
			}
			if v < -1<<31 || v > 1<<31-1 {
				return 0, errors.New("number past 32 bits")
			}
			return int32(v), nil
		}
	}
	return 0, errors.New("LEB128 number too long")
}
