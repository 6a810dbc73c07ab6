package linmem

import (
	"math"
	"syscall"

	"github.com/tetratelabs/wazero/experimental"
)

var allocator experimental.MemoryAllocator = experimental.MemoryAllocatorFunc(allocate)

// allocate reserves maxBytes. MAP_NORESERVE keeps the reservation out of
// the kernel's commit accounting, so a 64 MiB limit per instance costs
// address space only. A memory that cannot be mapped falls back to a Go
// slice, as wazero would have used.
func allocate(_, maxBytes uint64) experimental.LinearMemory {
	if maxBytes == 0 || maxBytes > math.MaxInt {
		return &slice{max: maxBytes}
	}
	b, err := syscall.Mmap(-1, 0, int(maxBytes), syscall.PROT_READ|syscall.PROT_WRITE,
		syscall.MAP_PRIVATE|syscall.MAP_ANONYMOUS|syscall.MAP_NORESERVE)
	if err != nil {
		return &slice{max: maxBytes}
	}
	return &mapping{b: b}
}

// mapping is a linear memory in its own anonymous mapping. Pages never
// touched read as zero, which is what a grown memory must hold, and a
// memory never shrinks, so Reallocate only moves the end.
type mapping struct{ b []byte }

func (m *mapping) Reallocate(size uint64) []byte {
	if m.b == nil || size > uint64(len(m.b)) {
		return nil
	}
	return m.b[:size:size]
}

func (m *mapping) Free() {
	if m.b != nil {
		_ = syscall.Munmap(m.b)
		m.b = nil
	}
}

// slice is a linear memory in a Go slice, as wazero keeps one without an
// allocator.
type slice struct {
	b   []byte
	max uint64
}

func (s *slice) Reallocate(size uint64) []byte {
	if size > s.max {
		return nil
	}
	if size > uint64(cap(s.b)) {
		grown := make([]byte, size, max(size, 2*uint64(cap(s.b))))
		copy(grown, s.b)
		s.b = grown
	}
	s.b = s.b[:size]
	return s.b
}

func (s *slice) Free() { s.b = nil }
