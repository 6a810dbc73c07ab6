package datapack

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/tetratelabs/wazero"

	"github.com/lkedge/lkedge/host/plugin/internal/wasmtest"
	"github.com/lkedge/lkedge/host/plugin/plugintest"
)

// The oracle is wazero itself: a module and its packed form are
// instantiated side by side, and what the world can see of them (whether
// instantiation fails, and every byte of the memory) must be the same.

type seg struct {
	flags  byte   // 0: active in memory 0; 1: passive; 2: active with a memory index
	global bool   // offset from global.get 0 (an imported i32) instead of i32.const
	offset int32  // i32.const
	data   []byte // nil is an empty segment
}

type layout struct {
	pages        uint32 // the memory's minimum (and maximum)
	importMemory bool   // the memory is env.mem, filled with 0xAA by its exporter
	dataCount    bool
	segs         []seg
}

// module assembles the layout with package wasmtest's encoders, written
// apart from this package's. It exports the memory as "mem".
func (l layout) module() []byte {
	limits := wasmtest.Cat([]byte{0x01}, wasmtest.Leb(uint64(l.pages)), wasmtest.Leb(uint64(l.pages)))
	var imports [][]byte
	if l.importMemory {
		imports = append(imports, wasmtest.Cat(wasmtest.Str("env"), wasmtest.Str("mem"), []byte{0x02}, limits))
	}
	imports = append(imports, wasmtest.Cat(wasmtest.Str("env"), wasmtest.Str("base"), []byte{0x03, wasmtest.I32, 0x00}))
	var secs [][]byte
	secs = append(secs, wasmtest.Sec(wasmtest.SecImport, wasmtest.Vec(imports...)))
	if !l.importMemory {
		secs = append(secs, wasmtest.Sec(wasmtest.SecMemory, wasmtest.Vec(limits)))
	}
	secs = append(secs, wasmtest.Sec(wasmtest.SecExport, wasmtest.Vec(wasmtest.Export("mem", wasmtest.ExportMemory, 0))))
	if l.dataCount {
		secs = append(secs, wasmtest.Sec(secDataCount, wasmtest.Leb(uint64(len(l.segs)))))
	}
	var items [][]byte
	for _, s := range l.segs {
		off := wasmtest.ConstExpr(wasmtest.I32Const(s.offset))
		if s.global {
			off = wasmtest.ConstExpr(wasmtest.Op(wasmtest.OpGlobalGet, 0))
		}
		body := wasmtest.Cat(wasmtest.Leb(uint64(len(s.data))), s.data)
		switch s.flags {
		case 0:
			items = append(items, wasmtest.Cat([]byte{0x00}, off, body))
		case 1:
			items = append(items, wasmtest.Cat([]byte{0x01}, body))
		case 2:
			items = append(items, wasmtest.Cat([]byte{0x02, 0x00}, off, body))
		}
	}
	secs = append(secs, wasmtest.Sec(wasmtest.SecData, wasmtest.Vec(items...)))
	return wasmtest.Module(secs...)
}

// env is the module the layouts import from: a memory of pages pages
// filled with 0xAA, and an immutable i32 global of value 8.
func env(pages uint32) []byte {
	limits := wasmtest.Cat([]byte{0x01}, wasmtest.Leb(uint64(pages)), wasmtest.Leb(uint64(pages)))
	fill := bytes.Repeat([]byte{0xAA}, int(pages)*65536)
	return wasmtest.Module(
		wasmtest.Sec(wasmtest.SecMemory, wasmtest.Vec(limits)),
		wasmtest.Sec(wasmtest.SecGlobal, wasmtest.Vec(wasmtest.Cat([]byte{wasmtest.I32, 0x00}, wasmtest.ConstExpr(wasmtest.I32Const(8))))),
		wasmtest.Sec(wasmtest.SecExport, wasmtest.Vec(
			wasmtest.Export("mem", wasmtest.ExportMemory, 0),
			wasmtest.Export("base", 0x03, 0),
		)),
		wasmtest.Sec(wasmtest.SecData, wasmtest.Vec(wasmtest.Cat([]byte{0x00}, wasmtest.ConstExpr(wasmtest.I32Const(0)),
			wasmtest.Leb(uint64(len(fill))), fill))),
	)
}

// instantiate returns the module's memory after instantiation, or the
// error instantiation failed with.
func instantiate(t testing.TB, wasm []byte, pages uint32) ([]byte, error) {
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer rt.Close(ctx)
	if _, err := rt.InstantiateWithConfig(ctx, env(pages), wazero.NewModuleConfig().WithName("env")); err != nil {
		t.Fatalf("env: %v", err)
	}
	m, err := rt.InstantiateWithConfig(ctx, wasm, wazero.NewModuleConfig().WithName("m").WithStartFunctions())
	if err != nil {
		return nil, err
	}
	mem := m.ExportedMemory("mem")
	b, _ := mem.Read(0, mem.Size())
	return bytes.Clone(b), nil
}

// countSegments counts the data section's segments.
func countSegments(t testing.TB, wasm []byte) int {
	secs, err := sections(wasm[8:])
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range secs {
		if s.id == secData {
			r := reader{b: s.payload}
			n, err := r.u32()
			if err != nil {
				t.Fatal(err)
			}
			return int(n)
		}
	}
	return 0
}

// same checks that wasm and its packed form cannot be told apart, and
// returns how many segments the packed form has.
func same(t testing.TB, wasm []byte, pages uint32) (packed int) {
	t.Helper()
	out, err := Pack(wasm)
	if err != nil {
		t.Fatalf("Pack: %v", err)
	}
	want, wantErr := instantiate(t, wasm, pages)
	got, gotErr := instantiate(t, out, pages)
	switch {
	case (wantErr == nil) != (gotErr == nil):
		t.Fatalf("instantiation: original %v, packed %v", wantErr, gotErr)
	case wantErr == nil && !bytes.Equal(got, want):
		i := 0
		for i < len(got) && i < len(want) && got[i] == want[i] {
			i++
		}
		t.Fatalf("memory after instantiation differs at byte %d (%d and %d bytes)", i, len(want), len(got))
	}
	return countSegments(t, out)
}

func bs(n int, c byte) []byte { return bytes.Repeat([]byte{c}, n) }

func TestPack(t *testing.T) {
	for _, tc := range []struct {
		name   string
		l      layout
		packed int // segments after Pack
	}{
		{"gaps of zero to maxGap bytes", layout{pages: 1, segs: []seg{
			{offset: 100, data: bs(3, 1)}, {offset: 103, data: bs(5, 2)}, {offset: 108 + maxGap, data: bs(1, 3)},
			{offset: 109 + maxGap + 17, data: bs(9, 4)}}}, 1},
		{"a gap one past maxGap", layout{pages: 1, segs: []seg{
			{offset: 0, data: bs(4, 1)}, {offset: 4 + maxGap + 1, data: bs(4, 2)}, {offset: 8 + maxGap + 2, data: bs(4, 3)}}}, 2},
		{"empty segments inside and at the ends", layout{pages: 1, segs: []seg{
			{offset: 10}, {offset: 12, data: bs(2, 5)}, {offset: 14}, {offset: 20, data: bs(1, 6)}, {offset: 30}}}, 1},
		{"reaching the end of memory", layout{pages: 1, segs: []seg{
			{offset: 65530, data: bs(2, 7)}, {offset: 65534, data: bs(2, 8)}}}, 1},
		{"the last one past the end of memory", layout{pages: 1, segs: []seg{
			{offset: 65530, data: bs(2, 7)}, {offset: 65534, data: bs(3, 8)}}}, 1},
		{"an empty one past the end of memory", layout{pages: 1, segs: []seg{
			{offset: 65530, data: bs(2, 7)}, {offset: 65537}}}, 1},
		{"a negative offset (an address past 2 GiB)", layout{pages: 1, segs: []seg{
			{offset: 0, data: bs(2, 7)}, {offset: -4, data: bs(2, 8)}}}, 2},
		{"overlapping: later bytes win", layout{pages: 1, segs: []seg{
			{offset: 0, data: bs(8, 1)}, {offset: 4, data: bs(8, 2)}}}, 2},
		{"two ascending runs, as Go's linker writes them", layout{pages: 1, segs: []seg{
			{offset: 1000, data: bs(4, 1)}, {offset: 1010, data: bs(4, 2)}, {offset: 0, data: bs(4, 3)}, {offset: 8, data: bs(4, 4)}}}, 2},
		{"a gap written by an earlier segment", layout{pages: 1, segs: []seg{
			{offset: 5, data: bs(1, 1)}, {offset: 0, data: bs(4, 2)}, {offset: 8, data: bs(4, 3)}}}, 3},
		{"a gap written by a later segment", layout{pages: 1, segs: []seg{
			{offset: 0, data: bs(4, 2)}, {offset: 8, data: bs(4, 3)}, {offset: 5, data: bs(1, 1)}}}, 3},
		{"a gap holding an earlier empty segment", layout{pages: 1, segs: []seg{
			{offset: 5}, {offset: 0, data: bs(4, 2)}, {offset: 8, data: bs(4, 3)}}}, 3},
		{"a gap over an earlier segment's last byte", layout{pages: 1, segs: []seg{
			{offset: 0, data: bs(5, 1)}, {offset: 2, data: bs(2, 2)}, {offset: 8, data: bs(4, 3)}}}, 3},
		{"memory imported, gaps not zero", layout{pages: 1, importMemory: true, segs: []seg{
			{offset: 0, data: bs(4, 1)}, {offset: 8, data: bs(4, 2)}}}, 2},
		{"a data count section", layout{pages: 1, dataCount: true, segs: []seg{
			{offset: 0, data: bs(4, 1)}, {offset: 8, data: bs(4, 2)}}}, 2},
		{"a passive segment", layout{pages: 1, segs: []seg{
			{offset: 0, data: bs(4, 1)}, {flags: 1, data: bs(4, 9)}, {offset: 8, data: bs(4, 2)}}}, 3},
		{"an explicit memory index", layout{pages: 1, segs: []seg{
			{offset: 0, data: bs(4, 1)}, {flags: 2, offset: 8, data: bs(4, 2)}}}, 2},
		{"an offset from a global", layout{pages: 1, segs: []seg{
			{offset: 0, data: bs(4, 1)}, {global: true, data: bs(4, 2)}, {offset: 16, data: bs(4, 3)}}}, 3},
		{"one segment", layout{pages: 1, segs: []seg{{offset: 5, data: bs(4, 1)}}}, 1},
		{"no memory at all to write", layout{pages: 0, segs: []seg{{offset: 0}, {offset: 0}}}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := same(t, tc.l.module(), tc.l.pages); got != tc.packed {
				t.Errorf("%d segments after Pack, want %d", got, tc.packed)
			}
		})
	}
}

// TestPackGoModules packs the built-in plugins, built here with the Go
// toolchain, the modules Pack is for, and checks their memory after
// instantiation byte for byte.
func TestPackGoModules(t *testing.T) {
	mains, _ := filepath.Glob("../../../../plugins/*/main.go")
	if len(mains) == 0 {
		t.Fatal("no built-in plugins found under plugins/")
	}
	for _, main := range mains {
		dir := filepath.Dir(main)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			wasm := plugintest.Build(t, dir)
			before := countSegments(t, wasm)
			after := same(t, wasm, 0)
			t.Logf("%d segments, %d after Pack", before, after)
			if after*100 > before {
				t.Errorf("%d segments after Pack of %d: a Go module's should merge to a handful", after, before)
			}
		})
	}
}

// FuzzPack draws layouts: each segment from 7 bytes (form, offset step,
// length, fill), offsets stepping forward or back from the last end.
func FuzzPack(f *testing.F) {
	f.Add(uint8(1), false, false, []byte{0, 10, 0, 3, 1, 0, 0, 0, 20, 0, 3, 2, 0, 0})
	f.Add(uint8(0), true, false, []byte{0, 1, 0, 3, 1, 0, 0, 0, 1, 0, 3, 2, 0, 0})
	f.Add(uint8(2), false, true, []byte{0, 200, 0, 9, 1, 0, 0, 3, 0, 0, 3, 2, 0, 0})
	f.Fuzz(func(t *testing.T, pages uint8, importMemory, dataCount bool, draw []byte) {
		l := layout{pages: uint32(pages % 3), importMemory: importMemory, dataCount: dataCount}
		end := int32(0)
		for len(draw) >= 7 && len(l.segs) < 64 {
			form, step, size, fill := draw[0], int16(binary.LittleEndian.Uint16(draw[1:])), draw[3], draw[4]
			draw = draw[7:]
			s := seg{offset: end + int32(step), data: bs(int(size), fill)}
			switch form % 16 {
			case 13:
				s.flags = 1
			case 14:
				s.flags = 2
			case 15:
				s.global = true
			}
			if s.flags != 1 && !s.global {
				end = s.offset + int32(len(s.data))
			}
			l.segs = append(l.segs, s)
		}
		same(t, l.module(), l.pages)
	})
}

func TestPackRefusesWhatItCannotRead(t *testing.T) {
	good := layout{pages: 1, segs: []seg{{offset: 0, data: bs(4, 1)}, {offset: 8, data: bs(4, 2)}}}.module()
	for _, tc := range []struct {
		name string
		wasm []byte
	}{
		{"shorter than a header", good[:5]},
		{"a section cut short", good[:len(good)-3]},
		{"a count past the section", wasmtest.Module(
			wasmtest.Sec(wasmtest.SecMemory, wasmtest.Vec([]byte{0x00, 0x01})),
			wasmtest.Sec(wasmtest.SecData, wasmtest.Leb(1000)))},
		{"bytes after the last segment", wasmtest.Module(
			wasmtest.Sec(wasmtest.SecMemory, wasmtest.Vec([]byte{0x00, 0x01})),
			wasmtest.Sec(wasmtest.SecData, wasmtest.Vec(
				wasmtest.Cat([]byte{0x00}, wasmtest.ConstExpr(wasmtest.I32Const(0)), wasmtest.Leb(1), []byte{1}),
				wasmtest.Cat([]byte{0x00}, wasmtest.ConstExpr(wasmtest.I32Const(4)), wasmtest.Leb(1), []byte{1})), []byte{0}))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if out, err := Pack(tc.wasm); err == nil {
				t.Errorf("Pack took it (%d bytes out)", len(out))
			}
		})
	}
}

func ExamplePack() {
	wasm := layout{pages: 1, segs: []seg{
		{offset: 16, data: []byte("lk")}, {offset: 20, data: []byte("edge")},
	}}.module()
	out, _ := Pack(wasm)
	fmt.Println(len(wasm)-len(out), "bytes shorter")
	// Output: 3 bytes shorter
}
