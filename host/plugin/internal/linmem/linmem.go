// Package linmem keeps plugins' linear memories outside the Go heap.
//
// By default wazero backs a linear memory with a Go []byte, which it copies
// into a larger one at every memory.grow. A Go plugin's memory is a few
// MiB, and each warm instance keeps its own: under load the memories were
// a third of lkedge's live heap, which sets how far Go's collector lets
// the heap grow between collections, and every grow left the old copy as
// garbage. Here a memory is one
// anonymous mapping the size of the plugin's memory limit, reserved but not
// committed: the kernel backs a page when the guest first touches it, grow
// never moves or copies, and closing the instance returns the pages to the
// system at once.
package linmem

import "github.com/tetratelabs/wazero/experimental"

// Allocator returns the allocator to hand wazero (through
// experimental.WithMemoryAllocator), or nil where mappings are not
// available, which keeps wazero's default.
func Allocator() experimental.MemoryAllocator { return allocator }
