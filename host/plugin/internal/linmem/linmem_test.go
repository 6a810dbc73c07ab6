//go:build linux

package linmem

import (
	"bytes"
	"context"
	"runtime"
	"testing"
	"unsafe"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/experimental"
)

// TestReallocate: growing keeps the contents and the address (a mapping
// never moves), the grown part reads as zero, and nothing past the maximum
// is handed out; the Go-slice fallback keeps the contents too.
func TestReallocate(t *testing.T) {
	const page = 64 << 10
	for _, tc := range []struct {
		name       string
		mem        experimental.LinearMemory
		fixedStart bool
	}{
		{"mapping", allocate(0, 8*page), true},
		{"slice", &slice{max: 8 * page}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer tc.mem.Free()
			b := tc.mem.Reallocate(page)
			if len(b) != page {
				t.Fatalf("len %d, want %d", len(b), page)
			}
			copy(b, "guest data")
			grown := tc.mem.Reallocate(4 * page)
			if len(grown) != 4*page || !bytes.HasPrefix(grown, []byte("guest data")) {
				t.Fatalf("grown to %d bytes starting %q", len(grown), grown[:10])
			}
			if !bytes.Equal(grown[page:], make([]byte, 3*page)) {
				t.Error("the grown part is not zero")
			}
			if tc.fixedStart && unsafe.SliceData(grown) != unsafe.SliceData(b) {
				t.Error("the mapping moved")
			}
			if tc.mem.Reallocate(9*page) != nil {
				t.Error("grew past the maximum")
			}
		})
	}
}

// TestOutsideGoHeap: a module whose memory starts at 16 MiB adds that to
// the Go heap with wazero's default and next to nothing with Allocator.
func TestOutsideGoHeap(t *testing.T) {
	// (module (memory 256)): 256 pages of 64 KiB.
	wasm := []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00, 0x05, 0x04, 0x01, 0x00, 0x80, 0x02}
	const size = 256 * 64 << 10
	for _, tc := range []struct {
		name      string
		alloc     experimental.MemoryAllocator
		minGrowth uint64
		maxGrowth uint64
	}{
		{"wazero's default", nil, size * 7 / 8, 1 << 40},
		{"Allocator", Allocator(), 0, size / 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithMemoryLimitPages(512))
			defer rt.Close(ctx)
			code, err := rt.CompileModule(ctx, wasm)
			if err != nil {
				t.Fatal(err)
			}
			before := heap()
			mod, err := rt.InstantiateModule(experimental.WithMemoryAllocator(ctx, tc.alloc), code, wazero.NewModuleConfig())
			if err != nil {
				t.Fatal(err)
			}
			defer mod.Close(ctx)
			mod.Memory().WriteUint32Le(size-4, 1) // touch the last page
			growth := heap() - min(heap(), before)
			if growth < tc.minGrowth || growth > tc.maxGrowth {
				t.Errorf("Go heap grew by %d bytes, want between %d and %d", growth, tc.minGrowth, tc.maxGrowth)
			}
		})
	}
}

func heap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
