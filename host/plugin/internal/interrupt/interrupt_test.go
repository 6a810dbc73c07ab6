package interrupt

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/lkedge/lkedge/host/plugin/internal/wasmtest"
	"github.com/lkedge/lkedge/host/plugin/plugintest"
)

// ---------------------------------------------------------------------------
// The assembler: package wasmtest, whose encoders are written apart from
// this package's own, so a mistake there cannot hide one in the rewrite.

var (
	leb        = wasmtest.Leb
	sleb       = wasmtest.Sleb
	cat        = wasmtest.Cat
	vec        = wasmtest.Vec
	str        = wasmtest.Str
	sec        = wasmtest.Sec
	module     = wasmtest.Module
	funcType   = wasmtest.FuncType
	op         = wasmtest.Op
	i32Const   = wasmtest.I32Const
	constExpr  = wasmtest.ConstExpr
	body       = wasmtest.Body
	importFunc = wasmtest.ImportFunc
	export     = wasmtest.Export
)

func custom(name string, payload []byte) []byte { return sec(secCustom, str(name), payload) }

// Value types, element kinds and section ids the package does not name.
const (
	i32     = 0x7F
	funcref = 0x70

	secMemory = 5
	secData   = 11
)

// Opcodes the test modules use.
const (
	opUnreachable  = 0x00
	opNop          = 0x01
	opBlock        = 0x02
	opLoop         = 0x03
	opIf           = 0x04
	opElse         = 0x05
	opEnd          = 0x0B
	opBr           = 0x0C
	opBrIf         = 0x0D
	opCall         = 0x10
	opCallIndirect = 0x11
	opLocalGet     = 0x20
	opLocalSet     = 0x21
	opLocalTee     = 0x22
	opGlobalGet    = 0x23
	opGlobalSet    = 0x24
	opTableSet     = 0x26
	opI32Load8U    = 0x2D
	opI32Eqz       = 0x45
	opI32LtU       = 0x49
	opI32Add       = 0x6A
	opI32Sub       = 0x6B
	opI32Mul       = 0x6C
	opRefFunc      = 0xD2
	opPrefixFC     = 0xFC
	fcTableInit    = 12
	blockEmpty     = 0x40
)

// ---------------------------------------------------------------------------
// The test modules.

// featuresModule uses every place a function index can appear: an imported
// function and global, a start function, direct calls, tables filled by
// element segments of all eight encodings (active, passive and declarative;
// function indices and expressions; implicit and explicit table), ref.func
// in code and in a global initializer, call_indirect, loops (one with a
// typed block), recursion, memory and a data segment behind a data count.
//
// Function indices (before the rewrite):
//
//	0 host.add   1 start   2..9 k0..k7 (return 100+k)   10 double
//	11 compute   12 slot   13 slot1   14 sum   15 fact   16 viaGlobal
//	17 seven     18 started   19 peek   20 countdown
//
// k_i sits in slot i, of table 3 for i = 2 and 6 (the segments with an
// explicit table index) and of table 0 otherwise, put there by element
// segment i (encoding i). A function index left unshifted by the rewrite
// points at the function before it, which returns another number, or is
// undeclared for ref.func, which fails validation.
func featuresModule() []byte {
	const (
		tVoid    = 0 // () -> ()
		tI32     = 1 // () -> i32
		tI32I32  = 2 // i32 -> i32
		tI32x2   = 3 // (i32, i32) -> i32
		fnAdd    = 0
		fnStart  = 1
		fnK0     = 2
		fnDouble = 10
		fnFact   = 15
		fnSeven  = 17
	)
	types := sec(secType, vec(
		funcType(nil, nil),
		funcType(nil, []byte{i32}),
		funcType([]byte{i32}, []byte{i32}),
		funcType([]byte{i32, i32}, []byte{i32}),
	))
	imports := sec(secImport, vec(
		importFunc("host", "add", tI32x2),
		cat(str("env"), str("base"), []byte{0x03, i32, 0x00}), // immutable i32 global
	))
	funcs := sec(secFunction, vec(
		leb(tVoid),                                 // start
		leb(tI32), leb(tI32), leb(tI32), leb(tI32), // k0..k3
		leb(tI32), leb(tI32), leb(tI32), leb(tI32), // k4..k7
		leb(tI32I32), leb(tI32I32), leb(tI32I32), leb(tI32I32), // double compute slot slot1
		leb(tI32I32), leb(tI32I32), leb(tI32), leb(tI32), leb(tI32), // sum fact viaGlobal seven started
		leb(tI32), leb(tI32I32), // peek countdown
	))
	// Tables 1 and 2 are unused: the second table in use is 3 because,
	// read as an opcode, a 3 is loop, and a reader that forgot an
	// immediate table index would take it for one; 0 and 1 would pass
	// unnoticed as unreachable and nop.
	const tbl = 3
	tables := sec(secTable, vec(
		[]byte{funcref, 0x00, 8},
		[]byte{funcref, 0x00, 1},
		[]byte{funcref, 0x00, 1},
		[]byte{funcref, 0x00, 8},
	))
	memory := sec(secMemory, vec([]byte{0x00, 1}))
	globals := sec(secGlobal, vec(
		cat([]byte{i32, 0x01}, constExpr(i32Const(0))),                // 1: started flag
		cat([]byte{funcref, 0x00}, constExpr(op(opRefFunc, fnSeven))), // 2: ref.func in an initializer
	))
	exports := sec(secExport, vec(
		export("double", 0x00, fnDouble),
		export("compute", 0x00, 11),
		export("slot", 0x00, 12),
		export("slot1", 0x00, 13),
		export("sum", 0x00, 14),
		export("fact", 0x00, fnFact),
		export("viaGlobal", 0x00, 16),
		export("started", 0x00, 18),
		export("peek", 0x00, 19),
		export("countdown", 0x00, 20),
		export("memory", 0x02, 0), // memory, table and global indices
		export("table", 0x01, 0),  // must not move
		export("flag", 0x03, 1),
	))
	start := sec(secStart, leb(fnStart))
	k := func(i uint32) uint32 { return fnK0 + i }
	refExpr := func(i uint32) []byte { return constExpr(op(opRefFunc, k(i))) }
	elements := sec(secElement, vec(
		cat(leb(0), constExpr(i32Const(0)), vec(leb(uint64(k(0))))),                         // active, table 0, indices
		cat(leb(1), []byte{0x00}, vec(leb(uint64(k(1))))),                                   // passive, indices
		cat(leb(2), leb(tbl), constExpr(i32Const(2)), []byte{0x00}, vec(leb(uint64(k(2))))), // active, table 3, indices
		cat(leb(3), []byte{0x00}, vec(leb(uint64(k(3))))),                                   // declarative, indices
		cat(leb(4), constExpr(i32Const(4)), vec(refExpr(4))),                                // active, table 0, expressions
		cat(leb(5), []byte{funcref}, vec(refExpr(5))),                                       // passive, expressions
		cat(leb(6), leb(tbl), constExpr(i32Const(6)), []byte{funcref}, vec(refExpr(6))),     // active, table 3, expressions
		cat(leb(7), []byte{funcref}, vec(refExpr(7))),                                       // declarative, expressions
	))
	dataCount := sec(secDataCount, leb(1))
	tableInit := func(dst int32, elem uint32) []byte {
		return cat(i32Const(dst), i32Const(0), i32Const(1), op(opPrefixFC, fcTableInit, elem, 0))
	}
	var kBodies [][]byte
	for i := range int32(8) {
		kBodies = append(kBodies, body(nil, i32Const(100+i)))
	}
	bodies := [][]byte{
		// start: copy the passive segments into their slots, place the
		// functions the declarative ones declare, raise the flag.
		body(nil,
			tableInit(1, 1), tableInit(5, 5),
			i32Const(3), op(opRefFunc, k(3)), op(opTableSet, 0),
			i32Const(7), op(opRefFunc, k(7)), op(opTableSet, 0),
			i32Const(1), op(opGlobalSet, 1)),
	}
	bodies = append(bodies, kBodies...)
	bodies = append(bodies,
		// double(x) = 2x
		body(nil, op(opLocalGet, 0), i32Const(2), op(opI32Mul)),
		// compute(x) = add(double(x), base)
		body(nil, op(opLocalGet, 0), op(opCall, fnDouble), op(opGlobalGet, 0), op(opCall, fnAdd)),
		// slot(i) = table0[i](), slot1(i) = table3[i]()
		body(nil, op(opLocalGet, 0), op(opCallIndirect, tI32, 0)),
		body(nil, op(opLocalGet, 0), op(opCallIndirect, tI32, tbl)),
		// sum(n) = n + ... + 1, with a loop
		body(cat(leb(1), leb(1), []byte{i32}),
			op(opBlock, blockEmpty), op(opLoop, blockEmpty),
			op(opLocalGet, 0), op(opI32Eqz), op(opBrIf, 1),
			op(opLocalGet, 1), op(opLocalGet, 0), op(opI32Add), op(opLocalSet, 1),
			op(opLocalGet, 0), i32Const(1), op(opI32Sub), op(opLocalSet, 0),
			op(opBr, 0),
			op(opEnd), op(opEnd),
			op(opLocalGet, 1)),
		// fact(n), recursive
		body(nil,
			op(opLocalGet, 0), i32Const(2), op(opI32LtU),
			[]byte{opIf, i32}, i32Const(1),
			[]byte{opElse}, op(opLocalGet, 0), op(opLocalGet, 0), i32Const(1), op(opI32Sub), op(opCall, fnFact), op(opI32Mul),
			[]byte{opEnd}),
		// viaGlobal() = (the function in global 2)() through table3[0]
		body(nil, i32Const(0), op(opGlobalGet, 2), op(opTableSet, tbl), i32Const(0), op(opCallIndirect, tI32, tbl)),
		body(nil, i32Const(777)),
		body(nil, op(opGlobalGet, 1)),
		// peek() = memory[0]
		body(nil, i32Const(0), op(opI32Load8U, 0, 0)),
		// countdown(n): a loop whose block type is a type index (i32 ->
		// i32), so the check lands where a value sits on the stack.
		body(nil,
			op(opLocalGet, 0),
			op(opLoop, tI32I32),
			i32Const(1), op(opI32Sub), op(opLocalTee, 0), op(opLocalGet, 0), op(opBrIf, 0),
			[]byte{opEnd}),
	)
	code := sec(secCode, vec(bodies...))
	data := sec(secData, vec(cat(leb(0), constExpr(i32Const(0)), str("hi"))))
	return module(types, imports, funcs, tables, memory, globals, exports, start, elements, dataCount, code, data)
}

// spinModule has no import section. Its functions count their passes in
// the exported global "iters".
func spinModule() []byte {
	incr := cat(op(opGlobalGet, 0), i32Const(1), op(opI32Add), op(opGlobalSet, 0))
	return module(
		sec(secType, vec(funcType(nil, nil), funcType([]byte{i32}, nil))),
		sec(secFunction, vec(leb(0), leb(0), leb(0), leb(1))),
		sec(secGlobal, vec(cat([]byte{i32, 0x01}, constExpr(i32Const(0))))),
		sec(secExport, vec(
			export("spin", 0x00, 0),
			export("spinEntry", 0x00, 1),
			export("recurse", 0x00, 2),
			export("count", 0x00, 3),
			export("iters", 0x03, 0),
		)),
		sec(secCode, vec(
			// spin: loop forever; the body opens with the loop, so the
			// loop's check is the only one.
			body(nil, op(opLoop, blockEmpty), incr, op(opBr, 0), op(opEnd)),
			// spinEntry: the same after a nop, so it has an entry check too.
			body(nil, op(opNop), op(opLoop, blockEmpty), incr, op(opBr, 0), op(opEnd)),
			// recurse: infinite recursion without any loop.
			body(nil, incr, op(opCall, 2)),
			// count(n): n passes through a loop.
			body(nil,
				op(opBlock, blockEmpty), op(opLoop, blockEmpty),
				op(opLocalGet, 0), op(opI32Eqz), op(opBrIf, 1),
				op(opLocalGet, 0), i32Const(1), op(opI32Sub), op(opLocalSet, 0),
				incr, op(opBr, 0),
				op(opEnd), op(opEnd)),
		)),
	)
}

// namedModule has a name section with function, local and label names,
// DWARF sections the rewrite must drop and another custom section it
// must keep.
func namedModule() []byte {
	names := cat(
		sec(0, str("named")),
		sec(1, vec(
			cat(leb(0), str("imp")),
			cat(leb(1), str("alpha")),
			cat(leb(2), str("beta")),
			cat(leb(3), str("gamma")),
		)),
		sec(2, vec(cat(leb(3), vec(cat(leb(0), str("tmp")))))),
		sec(3, vec(cat(leb(2), vec(cat(leb(0), str("blk")))))),
		sec(7, vec(cat(leb(0), str("glob")))), // global names: not function-indexed
	)
	return module(
		custom(".debug_abbrev", []byte{1, 2, 3}),
		sec(secType, vec(funcType(nil, nil))),
		sec(secImport, vec(importFunc("host", "nop", 0))),
		sec(secFunction, vec(leb(0), leb(0), leb(0))),
		sec(secGlobal, vec(cat([]byte{i32, 0x00}, constExpr(i32Const(5))))),
		sec(secExport, vec(export("run", 0x00, 1))),
		sec(secCode, vec(
			body(nil, op(opCall, 0), op(opCall, 2)),                      // alpha
			body(nil, op(opBlock, blockEmpty), op(opEnd), op(opCall, 3)), // beta
			body(cat(leb(1), leb(1), []byte{i32}), op(opUnreachable)),    // gamma
		)),
		custom(".debug_info", []byte{4, 5, 6}),
		custom("producers", []byte("\x01\x08language\x01\x02Go\x00")),
		custom("name", names),
		custom(".debug_line", []byte{7}),
	)
}

func seedModules() map[string][]byte {
	return map[string][]byte{
		"table init": tableInitModule(),
		"rec group":  recGroupModule(),
		"features":   featuresModule(),
		"spin":       spinModule(),
		"named":      namedModule(),
		"empty":      module(),
	}
}

// tableInitModule has a table whose initializer (function-references
// proposal: 0x40 0x00 before the table type) puts function 1 in every
// slot; g calls slot 0, which returns 42. Function indices: 0 g, 1 answer.
func tableInitModule() []byte {
	return module(
		sec(secType, vec(funcType(nil, []byte{i32}))),
		sec(secFunction, vec(leb(0), leb(0))),
		sec(secTable, vec(cat([]byte{0x40, 0x00, funcref, 0x00, 0x01}, constExpr(op(opRefFunc, 1))))),
		sec(secExport, vec(export("g", 0, 0))),
		sec(secElement, vec(cat(leb(3), []byte{0x00}, vec(leb(1))))), // declares function 1
		sec(secCode, vec(body(nil, i32Const(0), op(opCallIndirect, 0, 0)), body(nil, i32Const(42)))),
	)
}

// recGroupModule has a recursive type group (0x4e) of two types, one
// entry of the type section: the types the rewrite appends are 2 and 3,
// not 1 and 2. f has type 1 and returns 7.
func recGroupModule() []byte {
	return module(
		sec(secType, cat(leb(1), []byte{0x4e}, vec(funcType(nil, nil), funcType(nil, []byte{i32})))),
		sec(secFunction, vec(leb(1))),
		sec(secExport, vec(export("f", 0, 0))),
		sec(secCode, vec(body(nil, i32Const(7)))),
	)
}

// TestTableInitRenumbered: a table initializer's ref.func is renumbered
// (it named the grow check's import after the rewrite), and Tables reads
// the table's size past its initializer.
func TestTableInitRenumbered(t *testing.T) {
	wasm := tableInitModule()
	m, err := instantiate(t, mustInstrument(t, wasm, 3), &checker{fallback: 3})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := call(t, m, "g"); err != nil || got != 42 {
		t.Errorf("g() = %d, %v; want 42", got, err)
	}
	tables, err := Tables(wasm)
	if err != nil || len(tables) != 1 || tables[0] != (Table{Min: 1}) {
		t.Errorf("Tables = %+v, %v; want one table of 1 entry, no maximum", tables, err)
	}
}

// TestRecGroupCounted: the rewrite's types go after every type of a
// recursive group, so its imports get the signatures they need.
func TestRecGroupCounted(t *testing.T) {
	m, err := instantiate(t, mustInstrument(t, recGroupModule(), 3), &checker{fallback: 3})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := call(t, m, "f"); err != nil || got != 7 {
		t.Errorf("f() = %d, %v; want 7", got, err)
	}
}

// ---------------------------------------------------------------------------
// Running modules.

// checker is the host's interrupt_check: it counts its calls and answers
// from script, then with fallback.
type checker struct {
	calls      int
	script     []uint32
	fallback   uint32
	grows      [][2]int64 // grow_check's (delta, what)
	refuseGrow bool
}

// grow is the host's grow_check: it counts its calls and lets every
// growth through, unless refuseGrow is set.
func (c *checker) grow(delta uint32, what int32) uint32 {
	c.grows = append(c.grows, [2]int64{int64(delta), int64(what)})
	if c.refuseGrow {
		return 0xFFFFFFFF
	}
	return delta
}

func (c *checker) check() uint32 {
	c.calls++
	if len(c.script) > 0 {
		v := c.script[0]
		c.script = c.script[1:]
		return v
	}
	return c.fallback
}

// instantiate runs wasm in a fresh runtime (wazero's default, the compiler
// where there is one, as in production) next to the modules the test
// modules import: host (add, nop), env (the global base = 1000) and
// lkedge (interrupt_check, answered by chk).
func instantiate(t *testing.T, wasm []byte, chk *checker) (api.Module, error) {
	t.Helper()
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	t.Cleanup(func() { _ = rt.Close(ctx) })
	_, err := rt.NewHostModuleBuilder("host").
		NewFunctionBuilder().WithFunc(func(a, b uint32) uint32 { return a + b }).Export("add").
		NewFunctionBuilder().WithFunc(func() {}).Export("nop").
		Instantiate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	envMod := module(
		sec(secGlobal, vec(cat([]byte{i32, 0x00}, constExpr(i32Const(1000))))),
		sec(secExport, vec(export("base", 0x03, 0))),
	)
	if _, err := rt.InstantiateWithConfig(ctx, envMod, wazero.NewModuleConfig().WithName("env")); err != nil {
		t.Fatal(err)
	}
	if chk == nil {
		chk = &checker{}
	}
	_, err = rt.NewHostModuleBuilder(Module).
		NewFunctionBuilder().WithFunc(chk.check).Export(Name).
		NewFunctionBuilder().WithFunc(chk.grow).Export(GrowName).
		Instantiate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return rt.InstantiateWithConfig(ctx, wasm, wazero.NewModuleConfig().WithName("m"))
}

func mustInstrument(t *testing.T, wasm []byte, budget uint32) []byte {
	t.Helper()
	out, err := Instrument(wasm, budget)
	if err != nil {
		t.Fatalf("Instrument: %v", err)
	}
	return out
}

func call(t *testing.T, m api.Module, name string, args ...uint64) (uint64, error) {
	t.Helper()
	f := m.ExportedFunction(name)
	if f == nil {
		t.Fatalf("no export %s", name)
	}
	res, err := f.Call(context.Background(), args...)
	if err != nil || len(res) == 0 {
		return 0, err
	}
	return res[0], nil
}

// ---------------------------------------------------------------------------
// Tests.

// TestSemanticsUnchanged runs the features module before and after the
// rewrite and expects the same, known, results. The budget is small and
// interrupt_check always renews it, so the slow path (the host call) runs
// often in the middle of loops and calls, and must not disturb them.
func TestSemanticsUnchanged(t *testing.T) {
	orig := featuresModule()
	inst := mustInstrument(t, orig, 3)
	chk := &checker{fallback: 3}

	before, err := instantiate(t, orig, nil)
	if err != nil {
		t.Fatalf("original module: %v", err)
	}
	after, err := instantiate(t, inst, chk)
	if err != nil {
		t.Fatalf("instrumented module: %v", err)
	}
	for _, tc := range []struct {
		fn   string
		args []uint64
		want uint64
	}{
		{"started", nil, 1}, // the start function ran
		{"double", []uint64{21}, 42},
		{"compute", []uint64{5}, 2*5 + 1000}, // defined, imported call and imported global
		{"slot", []uint64{0}, 100},           // element encodings 0..7
		{"slot", []uint64{1}, 101},
		{"slot1", []uint64{2}, 102},
		{"slot", []uint64{3}, 103},
		{"slot", []uint64{4}, 104},
		{"slot", []uint64{5}, 105},
		{"slot1", []uint64{6}, 106},
		{"slot", []uint64{7}, 107},
		{"viaGlobal", nil, 777}, // ref.func in a global initializer
		{"sum", []uint64{10}, 55},
		{"sum", []uint64{1000}, 500500},
		{"fact", []uint64{10}, 3628800},
		{"peek", nil, 'h'},
		{"countdown", []uint64{50}, 0},
	} {
		name := fmt.Sprintf("%s%v", tc.fn, tc.args)
		b, err := call(t, before, tc.fn, tc.args...)
		if err != nil || b != tc.want {
			t.Errorf("original %s = %d, %v; want %d", name, b, err, tc.want)
		}
		a, err := call(t, after, tc.fn, tc.args...)
		if err != nil || a != tc.want {
			t.Errorf("instrumented %s = %d, %v; want %d", name, a, err, tc.want)
		}
	}
	// sum(1000) alone passes a thousand loop headers: with a budget of 3
	// the host must have been asked hundreds of times.
	if chk.calls < 300 {
		t.Errorf("interrupt_check called %d times, want hundreds", chk.calls)
	}
	// Other kinds of export are not function indices and must not move.
	if v := after.ExportedGlobal("flag").Get(); v != 1 {
		t.Errorf("exported global flag = %d, want 1", v)
	}
	if after.ExportedMemory("memory") == nil {
		t.Error("exported memory lost")
	}
}

// TestInterfaceUnchanged: the rewrite adds two imports, last, and changes
// no export's name or type.
func TestInterfaceUnchanged(t *testing.T) {
	for name, wasm := range seedModules() {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			rt := wazero.NewRuntime(ctx)
			defer rt.Close(ctx)
			before, err := rt.CompileModule(ctx, wasm)
			if err != nil {
				t.Fatal(err)
			}
			after, err := rt.CompileModule(ctx, mustInstrument(t, wasm, 3))
			if err != nil {
				t.Fatal(err)
			}
			if got, want := exportSigs(after), exportSigs(before); !reflect.DeepEqual(got, want) {
				t.Errorf("exports changed:\n got %v\nwant %v", got, want)
			}
			bi, ai := before.ImportedFunctions(), after.ImportedFunctions()
			if len(ai) != len(bi)+2 {
				t.Fatalf("%d imported functions, want %d", len(ai), len(bi)+2)
			}
			for i, f := range bi {
				if fmt.Sprint(f.Import()) != fmt.Sprint(ai[i].Import()) {
					t.Errorf("import %d: %v, was %v", i, fmt.Sprint(ai[i].Import()), fmt.Sprint(f.Import()))
				}
			}
			i32 := api.ValueTypeI32
			for i, want := range []struct {
				name   string
				params []api.ValueType
			}{{Name, nil}, {GrowName, []api.ValueType{i32, i32}}} {
				f := ai[len(bi)+i]
				mod, n, _ := f.Import()
				if mod != Module || n != want.name || !reflect.DeepEqual(f.ParamTypes(), want.params) || !reflect.DeepEqual(f.ResultTypes(), []api.ValueType{i32}) {
					t.Errorf("added import %s.%s %v -> %v, want %s.%s %v -> i32", mod, n, f.ParamTypes(), f.ResultTypes(), Module, want.name, want.params)
				}
			}
		})
	}
}

func exportSigs(c wazero.CompiledModule) map[string]string {
	m := map[string]string{}
	for name, f := range c.ExportedFunctions() {
		m[name] = fmt.Sprint(f.ParamTypes(), f.ResultTypes())
	}
	for name := range c.ExportedMemories() {
		m[name] = "memory"
	}
	return m
}

// TestStops: a guest that never returns is stopped once interrupt_check
// answers 0, after exactly the checks its budgets allow. The rewrite sets
// the budget global to budget, each check takes one, and the check that
// finds none left asks the host, whose answer counts that check too.
func TestStops(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fn     string
		budget uint32
		script []uint32 // interrupt_check's answers; 0 stops
		calls  int      // interrupt_check calls
		iters  uint64   // passes completed before the trap
	}{
		{"loop stopped at first look", "spin", 3, []uint32{0}, 1, 3},
		{"loop renewed once", "spin", 3, []uint32{3, 0}, 2, 6},
		{"loop renewed with small budgets", "spin", 3, []uint32{1, 1, 0}, 3, 5},
		{"budget 1", "spin", 1, []uint32{0}, 1, 1},
		// 63 and 64: the last budget whose i32.const takes one LEB128
		// byte, and the first taking two (bit 6 is the sign).
		{"budget 63", "spin", 63, []uint32{0}, 1, 63},
		{"budget 64", "spin", 64, []uint32{0}, 1, 64},
		{"budget 8192", "spin", 8192, []uint32{0}, 1, 8192},
		// A body that does not open with a loop also checks at entry, so
		// one pass less fits in the budget.
		{"function entry check", "spinEntry", 3, []uint32{0}, 1, 2},
		// No loop at all: the entry checks alone stop the recursion, long
		// before the stack would overflow.
		{"recursion", "recurse", 3, []uint32{0}, 1, 3},
		{"recursion renewed", "recurse", 3, []uint32{3, 3, 0}, 3, 9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			chk := &checker{script: tc.script}
			m, err := instantiate(t, mustInstrument(t, spinModule(), tc.budget), chk)
			if err != nil {
				t.Fatal(err)
			}
			_, err = call(t, m, tc.fn)
			if err == nil || !strings.Contains(err.Error(), "unreachable") {
				t.Fatalf("%s() = %v, want the check's unreachable trap", tc.fn, err)
			}
			if chk.calls != tc.calls {
				t.Errorf("interrupt_check called %d times, want %d", chk.calls, tc.calls)
			}
			if got := m.ExportedGlobal("iters").Get(); got != tc.iters {
				t.Errorf("%d passes before the trap, want %d", got, tc.iters)
			}
		})
	}
}

// TestRecursionWithoutRewrite shows what the checks spare: the same
// recursion in the original module only ends when the stack overflows.
func TestRecursionWithoutRewrite(t *testing.T) {
	m, err := instantiate(t, spinModule(), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = call(t, m, "recurse")
	if err == nil || strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("recurse() = %v, want a stack overflow", err)
	}
	if got := m.ExportedGlobal("iters").Get(); got < 1000 {
		t.Errorf("recursed %d times, want thousands", got)
	}
}

// TestLargeBudget: Instrument takes any positive uint32, so the budget's
// i32.const must stay valid above 2^31 (where it is negative as an s32);
// the counter only ever goes down to zero, so it works as unsigned.
func TestLargeBudget(t *testing.T) {
	for _, budget := range []uint32{1<<31 - 1, 1 << 31, math.MaxUint32} {
		t.Run(fmt.Sprint(budget), func(t *testing.T) {
			chk := &checker{}
			m, err := instantiate(t, mustInstrument(t, spinModule(), budget), chk)
			if err != nil {
				t.Fatalf("instrumented module refused: %v", err)
			}
			if _, err := call(t, m, "count", 1000); err != nil {
				t.Fatal(err)
			}
			if chk.calls != 0 || m.ExportedGlobal("iters").Get() != 1000 {
				t.Errorf("%d host calls, %d passes; want 0 and 1000", chk.calls, m.ExportedGlobal("iters").Get())
			}
		})
	}
}

// TestAddsMissingSections: the type, import and global sections the
// rewrite needs are created when absent, at their place in the format's
// section order (else the module would not decode), and the result runs.
func TestAddsMissingSections(t *testing.T) {
	f42 := [][]byte{
		sec(secType, vec(funcType(nil, []byte{i32}))),
		sec(secFunction, vec(leb(0))),
		sec(secExport, vec(export("f", 0x00, 0))),
		sec(secCode, vec(body(nil, i32Const(42)))),
	}
	mem := sec(secMemory, vec([]byte{0x00, 1}))
	for _, tc := range []struct {
		name string
		in   []byte
		want []byte // ids of the result's sections, custom ones left out
	}{
		{"empty module", module(), []byte{1, 2, 6}},
		{"memory only", module(mem, sec(secExport, vec(export("mem", 0x02, 0)))), []byte{1, 2, 5, 6, 7}},
		{"function without import or global", module(f42...), []byte{1, 2, 3, 6, 7, 10}},
		{"custom sections around", module(custom("a", nil), mem, custom("b", nil)), []byte{1, 2, 5, 6}},
		// data count sits between element and code, out of id order.
		{"data count", module(mem, sec(secDataCount, leb(1)), sec(secData, vec(cat(leb(0), constExpr(i32Const(0)), str("x"))))), []byte{1, 2, 5, 6, 12, 11}},
		{"only a custom section", module(custom("c", nil)), []byte{1, 2, 6}},
		{"import but no global", module(sec(secType, vec(funcType(nil, nil))), sec(secImport, vec(importFunc("host", "nop", 0)))), []byte{1, 2, 6}},
		{"global but no import", module(sec(secGlobal, vec(cat([]byte{i32, 0x00}, constExpr(i32Const(1)))))), []byte{1, 2, 6}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := mustInstrument(t, tc.in, 3)
			// Custom sections may sit anywhere; they must only all stay.
			var ids []byte
			customs := 0
			for _, s := range parseSections(t, out) {
				if s.id == secCustom {
					customs++
					continue
				}
				ids = append(ids, s.id)
			}
			if !bytes.Equal(ids, tc.want) {
				t.Errorf("sections %v, want %v", ids, tc.want)
			}
			want := 0
			for _, s := range parseSections(t, tc.in) {
				if s.id == secCustom {
					want++
				}
			}
			if customs != want {
				t.Errorf("%d custom sections, want %d", customs, want)
			}
			m, err := instantiate(t, out, nil)
			if err != nil {
				t.Fatalf("result does not instantiate: %v", err)
			}
			if f := m.ExportedFunction("f"); f != nil {
				if r, err := f.Call(context.Background()); err != nil || r[0] != 42 {
					t.Errorf("f() = %v, %v; want 42", r, err)
				}
			}
		})
	}
}

// TestNames: the name section follows the shift, so traps and profiles
// still name the right functions, and DWARF, whose code offsets the
// rewrite moved, is dropped while other custom sections stay.
func TestNames(t *testing.T) {
	out := mustInstrument(t, namedModule(), 1000)

	var customs []string
	var names []byte
	for _, s := range parseSections(t, out) {
		if s.id != secCustom {
			continue
		}
		r := &testReader{t: t, b: s.payload}
		n := r.name()
		customs = append(customs, n)
		if n == "name" {
			names = r.b[r.off:]
		}
	}
	if want := []string{"producers", "name"}; !reflect.DeepEqual(customs, want) {
		t.Errorf("custom sections %q, want %q", customs, want)
	}

	got := decodeNames(t, names)
	want := nameSection{
		module: "named",
		// 1 and 2 are the new imports, unnamed; the defined functions
		// moved up.
		funcs:  map[uint32]string{0: "imp", 3: "alpha", 4: "beta", 5: "gamma"},
		locals: map[uint32]map[uint32]string{5: {0: "tmp"}},
		labels: map[uint32]map[uint32]string{4: {0: "blk"}},
		raw:    map[byte][]byte{7: vec(cat(leb(0), str("glob")))},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("name section\n got %+v\nwant %+v", got, want)
	}

	// What wazero makes of it: the trap's stack trace names the functions
	// that were really on the stack (prefixed with the name section's
	// module name).
	m, err := instantiate(t, out, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = call(t, m, "run")
	if err == nil {
		t.Fatal("run() did not trap")
	}
	msg := err.Error()
	g, b, a := strings.Index(msg, ".gamma("), strings.Index(msg, ".beta("), strings.Index(msg, ".alpha(")
	if g < 0 || b < g || a < b {
		t.Errorf("stack trace does not show gamma, beta, alpha in that order:\n%s", msg)
	}
}

// TestRejectsGarbage: a broken module is an error, never a panic, and never
// a half-rewritten module.
func TestRejectsGarbage(t *testing.T) {
	typ := sec(secType, vec(funcType(nil, nil)))
	fn := sec(secFunction, vec(leb(0)))
	withBody := func(code ...[]byte) []byte {
		return module(typ, fn, sec(secCode, vec(body(nil, code...))))
	}
	// cutBody ends inside its last instruction: no end follows it.
	cutBody := func(code ...[]byte) []byte {
		b := cat(leb(0), cat(code...))
		return module(typ, fn, sec(secCode, vec(cat(leb(uint64(len(b))), b))))
	}
	for _, tc := range []struct {
		name   string
		in     []byte
		budget uint32
		want   string
	}{
		{"nil", nil, 3, "bad magic"},
		{"magic only", []byte("\x00asm"), 3, "bad magic"},
		{"bad magic", []byte("\x00wasm\x01\x00\x00"), 3, "bad magic"},
		{"wrong version", []byte("\x00asm\x02\x00\x00\x00"), 3, "version 2"},
		{"zero budget", module(), 0, "budget"},
		{"section past the end", cat(module(), []byte{secType, 10, 0}), 3, "truncated"},
		{"section size cut", cat(module(), []byte{secType, 0x80}), 3, "truncated"},
		{"section size too long", cat(module(), []byte{secType, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}), 3, "LEB128"},
		{"section size over u32", cat(module(), []byte{secType, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F}), 3, "u32"},
		{"empty type section", module(sec(secType)), 3, "type section"},
		{"import count past the end", module(sec(secImport, leb(2), importFunc("a", "b", 0))), 3, "import section"},
		{"import trailing bytes", module(sec(secImport, vec(), []byte{0x11, 0})), 3, "trailing bytes"},
		{"unknown import kind", module(sec(secImport, vec(cat(str("a"), str("b"), []byte{0x07, 0})))), 3, "unknown import kind"},
		{"global without end", module(sec(secGlobal, vec([]byte{i32, 0x00, 0x41, 0x01}))), 3, "global section"},
		{"export cut", module(sec(secExport, vec(str("f")))), 3, "section 7"},
		{"empty start", module(sec(secStart)), 3, "section 8"},
		{"unknown element kind", module(sec(secElement, vec(cat(leb(8), constExpr(i32Const(0)), vec())))), 3, "unknown element segment kind"},
		{"body past the end", module(typ, fn, sec(secCode, leb(1), leb(10), []byte{0})), 3, "function 0"},
		{"code trailing bytes", module(typ, fn, sec(secCode, vec(body(nil)), []byte{0})), 3, "trailing bytes"},
		{"unknown opcode 0xFF", withBody([]byte{0xFF}), 3, "unknown opcode"},
		{"exception handling try", withBody([]byte{0x06, blockEmpty}), 3, "unknown opcode"},
		{"unknown 0xFC", withBody(op(opPrefixFC, 99)), 3, "0xFC"},
		{"unknown SIMD", withBody(op(0xFD, 999)), 3, "SIMD"},
		{"unknown atomic", withBody(op(0xFE, 0x7F)), 3, "atomic"},
		{"call without index", cutBody([]byte{opCall}), 3, "function 0"},
		{"i32.const cut", cutBody([]byte{0x41, 0x80}), 3, "function 0"},
		{"f64.const cut", cutBody([]byte{0x44, 0, 0}), 3, "function 0"},
		{"br_table count too large", cutBody(cat([]byte{0x0E}, leb(math.MaxUint32))), 3, "function 0"},
		{"locals cut", module(typ, fn, sec(secCode, vec(cat(leb(2), leb(1), leb(1))))), 3, "function 0"},
		{"empty custom section", module(sec(secCustom)), 3, "section 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := Instrument(tc.in, tc.budget)
			if err == nil {
				t.Fatalf("accepted, gave % x", out)
			}
			if out != nil {
				t.Errorf("a module came with the error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

// brokenNames are modules wazero accepts although their name section is
// malformed, or a subsection's content and size differ: wazero skips the
// subsections it does not decode (label names here) without looking
// inside, and reads those it does without checking their sizes.
func brokenNames() map[string][]byte {
	f := sec(secType, vec(funcType(nil, nil)))
	fn := sec(secFunction, vec(leb(0)))
	code := sec(secCode, vec(body(nil)))
	names := vec(cat(leb(0), str("f")))
	return map[string][]byte{
		"label names garbage":   module(f, fn, code, custom("name", sec(3, []byte{0xFF}))),
		"function names size 0": module(f, fn, code, custom("name", cat([]byte{1, 0}, names))),
		"function names cut":    module(f, fn, code, custom("name", cat([]byte{1, 2}, names))),
		"subsection past end":   module(f, fn, code, custom("name", cat([]byte{1, 9}, names))),
		// wazero reads the bytes after the map as the next subsections:
		// an unknown one of 5 bytes, which hides a module name of 48
		// bytes in 3 that it would refuse (FuzzInstrument found it).
		"bytes after function names": module(f, fn, code, custom("name", cat(sec(1, cat(names, []byte{0x30, 5})), []byte{0, 3, 48, 48, 48}))),
		"bytes after module name":    module(f, fn, code, custom("name", cat(sec(0, str("m"), []byte{0x30, 0}), sec(1, names)))),
	}
}

// TestBrokenNamesDropped: a name section the rewrite cannot follow is
// dropped, like DWARF, rather than making it refuse a module wazero runs:
// names are only for debugging, and a plugin must not fail to load over
// them.
func TestBrokenNamesDropped(t *testing.T) {
	for name, wasm := range brokenNames() {
		t.Run(name, func(t *testing.T) {
			if _, err := instantiate(t, wasm, nil); err != nil {
				t.Fatalf("wazero refuses the original, the case proves nothing: %v", err)
			}
			out := mustInstrument(t, wasm, 3)
			for _, s := range parseSections(t, out) {
				if s.id == secCustom {
					t.Errorf("custom section kept: %q", s.payload)
				}
			}
			if _, err := instantiate(t, out, nil); err != nil {
				t.Fatalf("rewritten module refused: %v", err)
			}
		})
	}
}

// TestNoPanicOnDamage cuts and corrupts every seed module at every byte:
// whatever the rewrite makes of that, it must not panic, and it must not
// touch its input, which the caller may still hold.
func TestNoPanicOnDamage(t *testing.T) {
	for name, wasm := range seedModules() {
		keep := bytes.Clone(wasm)
		if _, err := Instrument(wasm, 3); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if !bytes.Equal(wasm, keep) {
			t.Errorf("%s: Instrument changed its input", name)
		}
		for i := range wasm {
			_, _ = Instrument(wasm[:i], 3)
			for _, c := range []byte{0x00, 0x7F, 0x80, 0xFF} {
				b := bytes.Clone(wasm)
				b[i] = c
				_, _ = Instrument(b, 3)
			}
		}
	}
}

// TestGoModule rewrites a real plugin as the Go toolchain builds it, the
// kind of module the rewrite exists for: wazero must still compile it,
// with the same exports, and the names of the exported functions (from
// its name section) must not have moved.
func TestGoModule(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a Go plugin")
	}
	wasm := plugintest.Build(t, "../../testdata/plugins/typical")
	out := mustInstrument(t, wasm, 10000)
	ctx := context.Background()
	// The interpreter validates exactly as the compiler does, in a tenth
	// of the time (the compiler takes half a minute per module under
	// -race); host/plugin's tests run instrumented plugins compiled.
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter().WithCustomSections(true))
	defer rt.Close(ctx)
	before, err := rt.CompileModule(ctx, wasm)
	if err != nil {
		t.Fatal(err)
	}
	after, err := rt.CompileModule(ctx, out)
	if err != nil {
		t.Fatalf("instrumented plugin does not compile: %v", err)
	}
	if got, want := exportSigs(after), exportSigs(before); !reflect.DeepEqual(got, want) {
		t.Errorf("exports changed:\n got %v\nwant %v", got, want)
	}
	if len(before.ExportedFunctions()) == 0 {
		t.Fatal("the plugin exports no function")
	}
	for name, bf := range before.ExportedFunctions() {
		af := after.ExportedFunctions()[name]
		if bf.Name() == "" || af.Name() != bf.Name() || af.Index() != bf.Index()+2 {
			t.Errorf("export %s: function %d %q became %d %q", name, bf.Index(), bf.Name(), af.Index(), af.Name())
		}
	}
	if n := len(after.ImportedFunctions()); n != len(before.ImportedFunctions())+2 {
		t.Errorf("%d imported functions, want %d", n, len(before.ImportedFunctions())+2)
	}
	for _, c := range after.CustomSections() {
		if strings.HasPrefix(c.Name(), ".debug_") {
			t.Errorf("DWARF section %s kept", c.Name())
		}
	}
}

// FuzzInstrument: no input makes the rewrite or Tables panic; Tables reads
// every module wazero accepts; a module wazero accepts is still accepted
// after the rewrite (so the rewrite never turns
// a working plugin into a refused one) and behaves the same: instantiated
// and its exported functions called with zero arguments by wazero's
// interpreter, as written and rewritten, it gives the same results and the
// same traps. A module wazero refuses stays refused, unless only its
// custom sections made wazero refuse it (the rewrite drops DWARF and a
// name section it cannot follow). The interpreter validates modules
// exactly as the compiler does, faster.
func FuzzInstrument(f *testing.F) {
	for _, wasm := range seedModules() {
		f.Add(wasm)
	}
	for _, wasm := range brokenNames() {
		f.Add(wasm)
	}
	f.Add(bulkModule())
	// A table of a typed reference, (ref null func) in two bytes, before a
	// function import: the rewrite once read it as one byte, and then
	// misread the imports after it.
	f.Add(module(
		sec(secType, vec(funcType(nil, nil))),
		sec(secImport, vec(cat(str("host"), str("t"), []byte{0x01, 0x63, 0x70, 0x00, 0x01}), importFunc("host", "nop", 0))),
	))
	// Imports from two modules neither of which is there: wazero names
	// either one, at random.
	f.Add(module(
		sec(secType, vec(funcType(nil, nil))),
		sec(secImport, vec(importFunc("env", "f", 0), importFunc("hist", "g", 0))),
	))
	f.Add([]byte("\x00asm\x01\x00\x00\x00\x01\x04\x01\x60\x00\x00"))
	f.Add([]byte("\x00asm\x02\x00\x00\x00"))
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer rt.Close(ctx)
	f.Fuzz(func(t *testing.T, wasm []byte) {
		out, ierr := Instrument(wasm, 3)
		_, terr := Tables(wasm)
		if hugeCount(wasm) {
			return // see hugeCount: too costly for wazero, not for the rewrite
		}
		if err := compile(ctx, rt, wasm); err != nil {
			if ierr == nil && compile(ctx, rt, out) == nil && compile(ctx, rt, withoutCustom(wasm)) != nil {
				t.Fatalf("wazero refuses the module (%v) but accepts its rewrite", err)
			}
			return
		}
		if ierr != nil {
			t.Fatalf("wazero accepts the module, the rewrite refuses it: %v", ierr)
		}
		if terr != nil {
			t.Fatalf("wazero accepts the module, Tables cannot read its tables: %v", terr)
		}
		if err := compile(ctx, rt, out); err != nil {
			t.Fatalf("wazero accepts the module but not its rewrite: %v", err)
		}
		funcs, mems := imports(ctx, t, rt, wasm)
		want := slices.Concat(funcs, []string{"func " + Module + "." + Name + " [] [i32]", "func " + Module + "." + GrowName + " [i32 i32] [i32]"}, mems)
		if f, m := imports(ctx, t, rt, out); !slices.Equal(slices.Concat(f, m), want) {
			t.Errorf("imports changed:\n got %q\nwant %q", slices.Concat(f, m), want)
		}
		before, after := behave(t, wasm), behave(t, out)
		for i := range min(len(before), len(after)) {
			if before[i] != after[i] {
				t.Errorf("as written: %s\nrewritten:  %s", before[i], after[i])
			}
		}
	})
}

// imports lists the functions and the memories wasm imports, as wazero
// reads them.
func imports(ctx context.Context, t *testing.T, rt wazero.Runtime, wasm []byte) (funcs, mems []string) {
	c, err := rt.CompileModule(ctx, wasm)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	for _, f := range c.ImportedFunctions() {
		mod, name, _ := f.Import()
		funcs = append(funcs, fmt.Sprintf("func %s.%s %v %v", mod, name, names(f.ParamTypes()), names(f.ResultTypes())))
	}
	for _, m := range c.ImportedMemories() {
		mod, name, _ := m.Import()
		max, _ := m.Max()
		mems = append(mems, fmt.Sprintf("memory %s.%s %d-%d", mod, name, m.Min(), max))
	}
	return funcs, mems
}

func names(types []api.ValueType) []string {
	var n []string
	for _, t := range types {
		n = append(n, api.ValueTypeName(t))
	}
	return n
}

// withoutCustom is wasm without its custom sections, or wasm itself if it
// does not parse.
func withoutCustom(wasm []byte) []byte {
	secs, err := sections(wasm)
	if err != nil || len(wasm) < 8 {
		return wasm
	}
	out := append([]byte(nil), wasm[:8]...)
	for _, s := range secs {
		if s.id != secCustom {
			out = append(appendU32(append(out, s.id), uint32(len(s.payload))), s.payload...)
		}
	}
	return out
}

// behave instantiates wasm in wazero's interpreter, with the imports
// instantiate provides and at most 1 MiB of memory, and calls each
// exported function, in name order, with zero arguments. It returns what
// each step gave; a step that runs past 100 ms (an endless loop: the
// rewritten module's host always renews its budget; or a deep recursion on
// a loaded machine) ends the list, and only the steps both runs completed
// compare.
func behave(t *testing.T, wasm []byte) []string {
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter().WithMemoryLimitPages(16).WithCloseOnContextDone(true))
	defer rt.Close(ctx)
	_, err := rt.NewHostModuleBuilder("host").
		NewFunctionBuilder().WithFunc(func(a, b uint32) uint32 { return a + b }).Export("add").
		NewFunctionBuilder().WithFunc(func() {}).Export("nop").
		Instantiate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	chk := &checker{fallback: 3}
	if _, err := rt.NewHostModuleBuilder(Module).
		NewFunctionBuilder().WithFunc(chk.check).Export(Name).
		NewFunctionBuilder().WithFunc(chk.grow).Export(GrowName).
		Instantiate(ctx); err != nil {
		t.Fatal(err)
	}
	timed := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, 100*time.Millisecond) }
	cctx, cancel := timed()
	m, err := rt.InstantiateWithConfig(cctx, wasm, wazero.NewModuleConfig().WithName("m"))
	timedOut := cctx.Err() != nil
	cancel()
	switch {
	case timedOut:
		return nil
	case err != nil:
		return []string{"instantiate: " + outcome(err)}
	}
	steps := []string{"instantiate: ok"}
	names := slices.Sorted(maps.Keys(m.ExportedFunctionDefinitions()))
	for _, name := range names {
		f := m.ExportedFunction(name)
		cctx, cancel := timed()
		res, err := f.Call(cctx, make([]uint64, len(f.Definition().ParamTypes()))...)
		timedOut := cctx.Err() != nil
		cancel()
		if timedOut {
			break
		}
		if err != nil {
			steps = append(steps, name+": "+outcome(err))
			continue
		}
		for i, typ := range f.Definition().ResultTypes() {
			if typ == funcref && i < len(res) && res[i] != 0 {
				res[i] = math.MaxUint64 // a host address, different in each runtime
			}
		}
		steps = append(steps, fmt.Sprintf("%s: %v", name, res))
	}
	return steps
}

// compile is rt.CompileModule with a panic turned into an error: wazero
// v1.12.0 panics on some malformed modules (seed 51eaed0f4b732c5f: a
// function whose type index is out of range and that is called), which
// counts as refusing them; on a rewritten module it fails the fuzz test
// like any other refusal.
func compile(ctx context.Context, rt wazero.Runtime, wasm []byte) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("wazero panicked: %v", p)
		}
	}()
	c, err := rt.CompileModule(ctx, wasm)
	if err == nil {
		_ = c.Close(ctx)
	}
	return err
}

// hugeCount tells whether wasm may hold a number of 2^14 or more (an
// LEB128 of three bytes or more). wazero sizes its slices from the counts
// a module declares before it reads what they count, so a few bytes can
// make it allocate gigabytes, and kill the fuzzing process (as the seed
// 98031735aa2364e7, whose element section claims 100 million segments,
// did). Instrument itself still gets every input.
func hugeCount(wasm []byte) bool {
	for i := 1; i < len(wasm); i++ {
		if wasm[i-1]&0x80 != 0 && wasm[i]&0x80 != 0 {
			return true
		}
	}
	return false
}

// ---------------------------------------------------------------------------
// Reading results back, independently of the package's reader.

type testReader struct {
	t   *testing.T
	b   []byte
	off int
}

func (r *testReader) byte() byte {
	r.t.Helper()
	if r.off >= len(r.b) {
		r.t.Fatalf("truncated at %d", r.off)
	}
	r.off++
	return r.b[r.off-1]
}

func (r *testReader) u32() uint32 {
	r.t.Helper()
	var v uint32
	for shift := 0; ; shift += 7 {
		c := r.byte()
		v |= uint32(c&0x7F) << shift
		if c&0x80 == 0 {
			return v
		}
	}
}

func (r *testReader) bytes(n int) []byte {
	r.t.Helper()
	if n > len(r.b)-r.off {
		r.t.Fatalf("truncated at %d", r.off)
	}
	r.off += n
	return r.b[r.off-n : r.off]
}

func (r *testReader) name() string { return string(r.bytes(int(r.u32()))) }

type testSection struct {
	id      byte
	payload []byte
}

func parseSections(t *testing.T, wasm []byte) []testSection {
	t.Helper()
	r := &testReader{t: t, b: wasm, off: 8}
	var secs []testSection
	for r.off < len(r.b) {
		id := r.byte()
		secs = append(secs, testSection{id, r.bytes(int(r.u32()))})
	}
	return secs
}

type nameSection struct {
	module string
	funcs  map[uint32]string
	locals map[uint32]map[uint32]string
	labels map[uint32]map[uint32]string
	raw    map[byte][]byte // other subsections, as they are
}

func decodeNames(t *testing.T, p []byte) nameSection {
	t.Helper()
	ns := nameSection{funcs: map[uint32]string{}, locals: map[uint32]map[uint32]string{}, labels: map[uint32]map[uint32]string{}, raw: map[byte][]byte{}}
	r := &testReader{t: t, b: p}
	nameMap := func(r *testReader) map[uint32]string {
		m := map[uint32]string{}
		for range r.u32() {
			k := r.u32()
			m[k] = r.name()
		}
		return m
	}
	for r.off < len(r.b) {
		id := r.byte()
		sub := &testReader{t: t, b: r.bytes(int(r.u32()))}
		switch id {
		case 0:
			ns.module = sub.name()
		case 1:
			ns.funcs = nameMap(sub)
		case 2, 3:
			m := ns.locals
			if id == 3 {
				m = ns.labels
			}
			for range sub.u32() {
				k := sub.u32()
				m[k] = nameMap(sub)
			}
		default:
			ns.raw[id] = sub.b
			sub.off = len(sub.b)
		}
		if sub.off != len(sub.b) {
			t.Errorf("name subsection %d: %d trailing bytes", id, len(sub.b)-sub.off)
		}
	}
	return ns
}

// TestRefusesIndicesPastOwn: the rewrite appends globals (the budget) and
// types (its imports'); a module naming a global or type past its own is
// invalid, and would become valid, with the budget in its hands, if the
// rewrite let it through.
func TestRefusesIndicesPastOwn(t *testing.T) {
	void := sec(secType, vec(funcType(nil, nil)))
	fn := sec(secFunction, vec(leb(0)))
	withBody := func(code ...[]byte) []byte {
		return module(void, fn, sec(secCode, vec(body(nil, code...))))
	}
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"global.set of the budget", withBody(i32Const(1<<30), op(opGlobalSet, 0)), "global 0 is past the module's 0 globals"},
		{"global.get past an imported global", module(void,
			sec(secImport, vec(cat(str("env"), str("base"), []byte{0x03, i32, 0x00}))), fn,
			sec(secCode, vec(body(nil, op(opGlobalGet, 1), []byte{0x1A})))), "global 1 is past the module's 1 globals"},
		{"global.get in an initializer", module(
			sec(secGlobal, vec(cat([]byte{i32, 0x00}, constExpr(op(opGlobalGet, 1)))))), "global 1 is past the module's 1 globals"},
		{"call_indirect of the check's type", module(void, fn,
			sec(secTable, vec([]byte{funcref, 0x00, 1})),
			sec(secCode, vec(body(nil, i32Const(0), op(opCallIndirect, 1, 0), []byte{0x1A})))), "type 1 is past the module's 1 types"},
		{"block of the check's type", withBody(op(opBlock, 1), i32Const(0), []byte{opEnd}, []byte{0x1A}), "block type 1 is past the module's 1 types"},
		{"function of the check's type", module(void, sec(secFunction, vec(leb(1))), sec(secCode, vec(body(nil, i32Const(0))))), "function 0 has type 1"},
		{"import of the grow check's type", module(void, sec(secImport, vec(importFunc(Module, GrowName, 2)))), "imported function has type 2"},
		// (ref null 1): a typed reference to the check's type (FuzzInstrument).
		{"local of a reference to the check's type", module(void, fn, sec(secCode, vec(body(cat(leb(1), leb(1), []byte{0x63, 0x01}))))), "names type 1, past the module's 1 types"},
		{"ref.null of the check's type", withBody([]byte{0xD0, 0x01}, []byte{0x1A}), "names type 1, past the module's 1 types"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
			defer rt.Close(ctx)
			if err := compile(ctx, rt, tc.in); err == nil {
				t.Fatal("wazero accepts the original: the case proves nothing")
			}
			out, err := Instrument(tc.in, 3)
			if err == nil {
				t.Fatalf("accepted; wazero says of the rewrite: %v", compile(ctx, rt, out))
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
		})
	}
}

// bulkModule exports fill(n) (memory.fill of n bytes of 0xAB at 0),
// peek() (the byte at 0), tfill(n) (table.fill of n null entries),
// mgrow(n) and tgrow(n).
func bulkModule() []byte {
	const (
		tI32I32 = 0
		tI32    = 1
	)
	fc := func(sub uint32, imm ...uint32) []byte { return op(opPrefixFC, append([]uint32{sub}, imm...)...) }
	refNull := []byte{0xD0, funcref}
	return module(
		sec(secType, vec(funcType([]byte{i32}, []byte{i32}), funcType(nil, []byte{i32}))),
		sec(secFunction, vec(leb(tI32I32), leb(tI32), leb(tI32I32), leb(tI32I32), leb(tI32I32))),
		sec(secTable, vec([]byte{funcref, 0x00, 4})),
		sec(secMemory, vec([]byte{0x00, 1})),
		sec(secExport, vec(export("fill", 0x00, 0), export("peek", 0x00, 1), export("tfill", 0x00, 2),
			export("mgrow", 0x00, 3), export("tgrow", 0x00, 4))),
		sec(secCode, vec(
			body(nil, i32Const(0), i32Const(0xAB), op(opLocalGet, 0), fc(11, 0), i32Const(0)),
			body(nil, i32Const(0), op(opI32Load8U, 0, 0)),
			body(nil, i32Const(0), refNull, op(opLocalGet, 0), fc(17, 0), i32Const(0)),
			body(nil, op(opLocalGet, 0), op(0x40, 0)),
			body(nil, refNull, op(opLocalGet, 0), fc(15, 0)),
		)),
	)
}

// TestBulkCharged: a bulk operation the budget covers is paid from it; a
// larger one makes the guest ask the host first, and a 0 from the host
// stops it before the operation runs. Growth asks grow_check, whose answer
// decides it.
func TestBulkCharged(t *testing.T) {
	wasm := mustInstrument(t, bulkModule(), 3)
	for _, tc := range []struct {
		name   string
		fn     string
		arg    uint64
		script []uint32
		calls  int   // interrupt_check calls
		trap   bool  // the unreachable of a stopped call
		peek   uint8 // memory[0] after
	}{
		// 3 checks of budget, 1 spent at entry: a fill of 2 checks'
		// worth (128 bytes) is paid for.
		{"small fill paid", "fill", 128, nil, 0, false, 0xAB},
		{"fill over the budget asks, stopped", "fill", 64 * 100, []uint32{0}, 1, true, 0},
		{"fill over the budget asks, renewed", "fill", 64 * 100, []uint32{3}, 1, false, 0xAB},
		{"16 MiB fill stopped before it runs", "fill", 16 << 20, []uint32{0}, 1, true, 0},
		{"small table fill paid", "tfill", 4, nil, 0, false, 0},
		{"table fill over the budget asks", "tfill", 100, []uint32{0}, 1, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			chk := &checker{script: tc.script}
			m, err := instantiate(t, wasm, chk)
			if err != nil {
				t.Fatal(err)
			}
			_, err = call(t, m, tc.fn, tc.arg)
			if stopped := err != nil && strings.Contains(err.Error(), "unreachable"); stopped != tc.trap {
				t.Errorf("%s(%d) = %v, want stopped %v", tc.fn, tc.arg, err, tc.trap)
			}
			if chk.calls != tc.calls {
				t.Errorf("interrupt_check called %d times, want %d", chk.calls, tc.calls)
			}
			chk.fallback = 3 // for peek
			if got, _ := call(t, m, "peek"); uint8(got) != tc.peek {
				t.Errorf("memory[0] = %#x, want %#x", got, tc.peek)
			}
		})
	}
	for _, tc := range []struct {
		fn     string
		refuse bool
		want   int32
		what   int64
	}{
		{"mgrow", false, 1, -1}, // the old size in pages
		{"mgrow", true, -1, -1},
		{"tgrow", false, 4, 0}, // the old size in entries
		{"tgrow", true, -1, 0},
	} {
		t.Run(fmt.Sprintf("%s refused %v", tc.fn, tc.refuse), func(t *testing.T) {
			chk := &checker{fallback: 3, refuseGrow: tc.refuse}
			m, err := instantiate(t, wasm, chk)
			if err != nil {
				t.Fatal(err)
			}
			got, err := call(t, m, tc.fn, 2)
			if err != nil || int32(got) != tc.want {
				t.Errorf("%s(2) = %d, %v; want %d", tc.fn, int32(got), err, tc.want)
			}
			if want := [][2]int64{{2, tc.what}}; !reflect.DeepEqual(chk.grows, want) {
				t.Errorf("grow_check saw %v, want %v", chk.grows, want)
			}
		})
	}
}
