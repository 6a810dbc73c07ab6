//go:build !linux

package linmem

import "github.com/tetratelabs/wazero/experimental"

var allocator experimental.MemoryAllocator
