// Package interrupt rewrites a WebAssembly module so that the host can stop
// a call at its time limit, at almost no cost to the calls that finish.
//
// wazero can stop a running call itself (RuntimeConfig.WithCloseOnContextDone),
// but it does so by leaving compiled code for Go at every loop header; a Go
// guest enters a loop in nearly every function it calls, so a plugin call
// costs about four times more with the time limit on than off.
//
// The rewrite instead gives every function entry and loop header a budget
// check: a global counter is decremented, and only when it reaches zero does
// the guest call the host (import Module.Name), which answers with a new
// budget, or with 0 when the call's time is up; the guest then traps. The
// fast path compiles to a load, a branch and a store. Bulk memory and table
// operations are charged by their size, and memory.grow and table.grow ask
// the host first (import Module.GrowName), which holds memory and tables
// to the plugin's memory limit. The host call every
// few thousand checks is also what lets Go's garbage collector stop a
// plugin that spins: compiled wasm cannot be preempted, and a goroutine
// stuck in it would hold a stop-the-world pause, and with it the timers that
// could end the spin, forever. This is the idea of Wasmtime's epoch
// interruption, done as a module rewrite.
package interrupt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// Import module and names of the host functions the rewritten module
// calls.
//
// Name is called when the budget runs out, and before a bulk memory or
// table operation the budget left does not cover. Its type is () -> i32:
// the new budget, or 0 to stop.
//
// GrowName is called before every memory.grow and table.grow, so the host
// can hold linear memory and tables together to one limit. Its type is
// (delta i32, what i32) -> i32, what being the table index or -1 for the
// memory: it answers the delta to grow by, or 0xFFFFFFFF, which no memory
// or table can grow by, to make the instruction fail (push -1) as it does
// past a declared maximum.
const (
	Module   = "lkedge"
	Name     = "interrupt_check"
	GrowName = "grow_check"
)

// Bulk operations are charged to the budget by their size: one check per
// 2^bulkShift bytes, about what a guest moves in the time it takes to pass
// one check, and a table entry counts as 2^tableShift bytes.
const (
	bulkShift  = 6
	tableShift = 3
)

// Section ids.
const (
	secCustom    = 0
	secType      = 1
	secImport    = 2
	secFunction  = 3
	secTable     = 4
	secGlobal    = 6
	secExport    = 7
	secStart     = 8
	secElement   = 9
	secCode      = 10
	secDataCount = 12
)

// order gives each known section its position, so that a section added by
// the rewrite lands where the format requires it (datacount sits between
// element and code).
var order = map[byte]int{1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 7, 8: 8, 9: 9, 12: 10, 10: 11, 11: 12}

var (
	errTruncated = errors.New("truncated module")
	// errTrailing is a section longer than its entries: the rewrite
	// re-encodes entry by entry, and would drop what wazero refuses.
	errTrailing = errors.New("trailing bytes")
)

type section struct {
	id      byte
	payload []byte
}

// rewrite holds what the rewrite needs to know about the module.
type rewrite struct {
	importedFuncs uint32 // functions at or above this index shift by two
	types         uint32 // the module's own types; the rewrite's come after
	nglobals      uint32 // the module's own globals; the rewrite's come after
	check         []byte // the budget check, inserted at entries and loops
	checkFn       uint32 // the interrupt_check import
	budget        uint32 // the budget global
	scratch       uint32 // a global holding a bulk operation's size
}

// reader reads p refusing heap types that name the types the rewrite
// appends (see reader).
func (rw *rewrite) reader(p []byte) reader {
	return reader{b: p, types: rw.types, limitTypes: true}
}

// addedTypes is how many types the rewrite appends.
const addedTypes = 2

// added is how many functions the rewrite imports.
const added = 2

func (rw *rewrite) fn(idx uint32) uint32 {
	if idx >= rw.importedFuncs {
		return idx + added
	}
	return idx
}

// Instrument returns a copy of the module with the budget checks inserted.
// budget is the number of checks between two host calls. It refuses a
// module that uses instructions it does not know, since a loop it could not
// see would leave the plugin unstoppable, and a module that names a global
// or type past its own: those indices would reach the counter and types
// the rewrite appends, turning an invalid module into one that refills its
// own budget. The rewrite does not validate the rest of the module; the
// caller must have wazero validate the original (see package plugin).
func Instrument(wasm []byte, budget uint32) ([]byte, error) {
	if err := CheckHeader(wasm); err != nil {
		return nil, err
	}
	if budget == 0 {
		return nil, errors.New("budget must be positive")
	}
	secs, err := sections(wasm)
	if err != nil {
		return nil, err
	}

	// The new types, globals and imports are appended after their kind's
	// existing entries, so that only defined functions shift (by two).
	types := find(secs, secType)
	entries, ntypes, err := countTypes(types)
	if err != nil {
		return nil, fmt.Errorf("type section: %w", err)
	}
	secs = upsert(secs, secType, appendVecItems(types, entries,
		[]byte{0x60, 0x00, 0x01, 0x7F},             // () -> i32
		[]byte{0x60, 0x02, 0x7F, 0x7F, 0x01, 0x7F}, // (i32, i32) -> i32
	))

	imports := find(secs, secImport)
	nimports, funcs, globalImports, err := countImports(imports, ntypes)
	if err != nil {
		return nil, fmt.Errorf("import section: %w", err)
	}
	check := appendU32(append(appendName(appendName(nil, Module), Name), 0x00), ntypes)
	grow := appendU32(append(appendName(appendName(nil, Module), GrowName), 0x00), ntypes+1)
	secs = upsert(secs, secImport, appendVecItems(imports, nimports, check, grow))
	if fs := find(secs, secFunction); fs != nil {
		if err := checkFunctionTypes(fs.payload, ntypes); err != nil {
			return nil, fmt.Errorf("function section: %w", err)
		}
	}

	rw := &rewrite{importedFuncs: funcs, types: ntypes, checkFn: funcs}
	if rw.nglobals, err = countGlobals(find(secs, secGlobal)); err != nil {
		return nil, fmt.Errorf("global section: %w", err)
	}
	rw.nglobals += globalImports
	globals := find(secs, secGlobal)
	var nglobals uint32
	var gpayload []byte
	if globals != nil {
		if gpayload, nglobals, err = rw.globals(globals.payload); err != nil {
			return nil, fmt.Errorf("global section: %w", err)
		}
		globals.payload = gpayload
	}
	rw.budget, rw.scratch = rw.nglobals, rw.nglobals+1
	budgetGlobal := append(appendI32Const([]byte{0x7F, 0x01}, budget), 0x0B)
	scratchGlobal := append(appendI32Const([]byte{0x7F, 0x01}, 0), 0x0B)
	secs = upsert(secs, secGlobal, appendVecItems(find(secs, secGlobal), nglobals, budgetGlobal, scratchGlobal))

	rw.check = budgetCheck(funcs, rw.budget)
	for i := range secs {
		s := &secs[i]
		var p []byte
		switch s.id {
		case secTable:
			p, err = rw.tables(s.payload)
		case secExport:
			p, err = rw.exports(s.payload)
		case secStart:
			p, err = rw.start(s.payload)
		case secElement:
			p, err = rw.elements(s.payload)
		case secCode:
			p, err = rw.code(s.payload)
		case secCustom:
			p, err = rw.custom(s.payload)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("section %d: %w", s.id, err)
		}
		s.payload = p
	}

	out := append([]byte(nil), wasm[:8]...)
	for _, s := range secs {
		if s.payload == nil && s.id == secCustom {
			continue // dropped
		}
		out = append(out, s.id)
		out = appendU32(out, uint32(len(s.payload)))
		out = append(out, s.payload...)
	}
	return out, nil
}

// CheckHeader tells whether wasm starts as a WebAssembly 1.0 binary does,
// for an error that says what the file is not.
func CheckHeader(wasm []byte) error {
	if len(wasm) < 8 || !bytes.Equal(wasm[:4], []byte("\x00asm")) {
		return errors.New("not a WebAssembly binary (bad magic)")
	}
	if v := binary.LittleEndian.Uint32(wasm[4:8]); v != 1 {
		return fmt.Errorf("unsupported WebAssembly binary version %d", v)
	}
	return nil
}

// budgetCheck is, with $b the budget global and $check the host import:
//
//	global.get $b  i32.eqz
//	if  call $check  global.set $b  global.get $b  i32.eqz  if unreachable end  end
//	global.get $b  i32.const 1  i32.sub  global.set $b
func budgetCheck(fn, g uint32) []byte {
	get := appendU32([]byte{0x23}, g)
	set := appendU32([]byte{0x24}, g)
	var b []byte
	b = append(append(b, get...), 0x45, 0x04, 0x40)
	b = append(appendU32(append(b, 0x10), fn), set...)
	b = append(append(b, get...), 0x45, 0x04, 0x40, 0x00, 0x0B, 0x0B)
	b = append(append(b, get...), 0x41, 0x01, 0x6B)
	return append(b, set...)
}

// charge is inserted before a bulk operation, whose size n is on top of
// the stack, with $t the scratch global:
//
//	global.set $t
//	global.get $b  global.get $t i32.const shift i32.shr_u  i32.lt_u
//	if  call $check  global.set $b  global.get $b  i32.eqz  if unreachable end
//	else  global.get $b  global.get $t i32.const shift i32.shr_u  i32.sub  global.set $b
//	end
//	global.get $t
//
// An operation the budget covers is paid for; a larger one makes the
// guest look at the clock first, so a loop of large fills or copies is
// stopped at the time limit, and a collection waiting to stop the world
// gets its chance between two of them.
func (rw *rewrite) charge(b []byte, shift byte) []byte {
	get := appendU32([]byte{0x23}, rw.budget)
	set := appendU32([]byte{0x24}, rw.budget)
	getT := appendU32([]byte{0x23}, rw.scratch)
	cost := append(append([]byte(nil), getT...), 0x41, shift, 0x76)
	b = append(b, 0x24)
	b = appendU32(b, rw.scratch)
	b = append(append(append(b, get...), cost...), 0x49, 0x04, 0x40)
	b = append(appendU32(append(b, 0x10), rw.checkFn), set...)
	b = append(append(b, get...), 0x45, 0x04, 0x40, 0x00, 0x0B, 0x05)
	b = append(append(append(b, get...), cost...), 0x6B)
	b = append(append(b, set...), 0x0B)
	return append(b, getT...)
}

// growCheck is inserted before memory.grow (what = -1) and table.grow
// (what = the table index), whose delta is on top of the stack:
//
//	i32.const what  call $grow
func (rw *rewrite) growCheck(b []byte, what int32) []byte {
	b = appendI32Const(b, uint32(what))
	return appendU32(append(b, 0x10), rw.checkFn+1)
}

func sections(wasm []byte) ([]section, error) {
	var secs []section
	r := reader{b: wasm, off: 8}
	for r.off < len(r.b) {
		id, err := r.byte()
		if err != nil {
			return nil, err
		}
		n, err := r.u32()
		if err != nil {
			return nil, fmt.Errorf("section %d size: %w", id, err)
		}
		p, err := r.bytes(int(n))
		if err != nil {
			return nil, fmt.Errorf("section %d: %w", id, err)
		}
		secs = append(secs, section{id, p})
	}
	return secs, nil
}

func find(secs []section, id byte) *section {
	for i := range secs {
		if secs[i].id == id {
			return &secs[i]
		}
	}
	return nil
}

// upsert replaces the payload of section id, or inserts the section at its
// place in the format's order.
func upsert(secs []section, id byte, payload []byte) []section {
	if s := find(secs, id); s != nil {
		s.payload = payload
		return secs
	}
	at := len(secs)
	for i, s := range secs {
		if s.id != secCustom && order[s.id] > order[id] {
			at = i
			break
		}
	}
	secs = append(secs, section{})
	copy(secs[at+1:], secs[at:])
	secs[at] = section{id, payload}
	return secs
}

// countTypes returns how many entries the type section has and how many
// types they define: a recursive group (0x4e, which wazero reads) is one
// entry of several types. A type may only name types before it or in its
// own group, so none can name the types the rewrite appends after them.
func countTypes(s *section) (entries, types uint32, err error) {
	if s == nil {
		return 0, 0, nil
	}
	r := reader{b: s.payload}
	if entries, err = r.u32(); err != nil {
		return 0, 0, err
	}
	for range entries {
		group := uint32(1)
		if r.off < len(r.b) && r.b[r.off] == 0x4e {
			r.off++
			if group, err = r.u32(); err != nil {
				return 0, 0, err
			}
		}
		if uint64(types)+uint64(group) > 1<<32-1 {
			return 0, 0, errors.New("too many types")
		}
		for range group {
			if err := r.funcType(); err != nil {
				return 0, 0, err
			}
		}
		types += group
	}
	if r.off != len(r.b) {
		return 0, 0, errTrailing
	}
	return entries, types, nil
}

func vecLen(s *section) (uint32, error) {
	if s == nil {
		return 0, nil
	}
	return (&reader{b: s.payload}).u32()
}

// appendVecItems returns a vector section payload with items appended.
func appendVecItems(s *section, n uint32, items ...[]byte) []byte {
	out := appendU32(nil, n+uint32(len(items)))
	if s != nil {
		r := reader{b: s.payload}
		_, _ = r.u32() // the count was read successfully before
		out = append(out, s.payload[r.off:]...)
	}
	for _, item := range items {
		out = append(out, item...)
	}
	return out
}

// countGlobals reads the number of globals a global section defines.
func countGlobals(s *section) (uint32, error) {
	return vecLen(s)
}

// checkFunctionTypes refuses a function section that declares a type past
// the module's own.
func checkFunctionTypes(p []byte, types uint32) error {
	r := reader{b: p}
	n, err := r.u32()
	if err != nil {
		return err
	}
	for i := range n {
		t, err := r.u32()
		if err != nil {
			return err
		}
		if t >= types {
			return fmt.Errorf("function %d has type %d, past the module's %d types", i, t, types)
		}
	}
	return nil
}

// countImports counts the imports, refusing a function import whose type
// is past the module's types, and bytes after the last import (the new
// imports go after it, so the rewrite would drop them, and wazero refuses
// them).
func countImports(s *section, types uint32) (n, funcs, globals uint32, err error) {
	if s == nil {
		return 0, 0, 0, nil
	}
	r := reader{b: s.payload} // wazero does not check an imported table's heap type
	if n, err = r.u32(); err != nil {
		return 0, 0, 0, err
	}
	for range n {
		if _, err = r.name(); err != nil {
			return
		}
		if _, err = r.name(); err != nil {
			return
		}
		var kind byte
		if kind, err = r.byte(); err != nil {
			return
		}
		switch kind {
		case 0x00: // function: type index
			funcs++
			var t uint32
			if t, err = r.u32(); err == nil && t >= types {
				err = fmt.Errorf("imported function has type %d, past the module's %d types", t, types)
			}
		case 0x01: // table: reftype (two bytes or more for a typed reference), limits
			if err = r.valType(); err == nil {
				err = r.limits()
			}
		case 0x02: // memory: limits
			err = r.limits()
		case 0x03: // global: valtype, mutability
			globals++
			if err = r.valType(); err == nil {
				_, err = r.byte()
			}
		default:
			err = fmt.Errorf("unknown import kind 0x%02x", kind)
		}
		if err != nil {
			return
		}
	}
	if r.off != len(s.payload) {
		return 0, 0, 0, errTrailing
	}
	return n, funcs, globals, nil
}

// globals renumbers ref.func in the initializers of the global section.
func (rw *rewrite) globals(p []byte) ([]byte, uint32, error) {
	r := rw.reader(p)
	n, err := r.u32()
	if err != nil {
		return nil, 0, err
	}
	out := appendU32(nil, n)
	for range n {
		start := r.off
		if err := r.valType(); err != nil {
			return nil, 0, err
		}
		if _, err := r.byte(); err != nil { // mutability
			return nil, 0, err
		}
		out = append(out, p[start:r.off]...)
		if out, err = rw.expr(out, &r); err != nil {
			return nil, 0, err
		}
	}
	if r.off != len(p) {
		return nil, 0, errTrailing
	}
	return out, n, nil
}

// tables renumbers ref.func in the initializer expressions of the table
// section (tables of the function-references proposal may have one).
func (rw *rewrite) tables(p []byte) ([]byte, error) {
	r := rw.reader(p)
	n, err := r.u32()
	if err != nil {
		return nil, err
	}
	out := appendU32(nil, n)
	for range n {
		start := r.off
		_, init, err := r.tableType()
		if err != nil {
			return nil, err
		}
		out = append(out, p[start:r.off]...)
		if init {
			if out, err = rw.expr(out, &r); err != nil {
				return nil, err
			}
		}
	}
	if r.off != len(p) {
		return nil, errTrailing
	}
	return out, nil
}

func (rw *rewrite) exports(p []byte) ([]byte, error) {
	r := reader{b: p}
	n, err := r.u32()
	if err != nil {
		return nil, err
	}
	out := appendU32(nil, n)
	for range n {
		start := r.off
		if _, err := r.name(); err != nil {
			return nil, err
		}
		kind, err := r.byte()
		if err != nil {
			return nil, err
		}
		at := r.off
		idx, err := r.u32()
		if err != nil {
			return nil, err
		}
		out = append(out, p[start:at]...)
		switch kind {
		case 0x00:
			idx = rw.fn(idx)
		case 0x03:
			if idx >= rw.nglobals {
				return nil, fmt.Errorf("export of global %d, past the module's %d globals", idx, rw.nglobals)
			}
		}
		out = appendU32(out, idx)
	}
	if r.off != len(p) {
		return nil, errTrailing
	}
	return out, nil
}

func (rw *rewrite) start(p []byte) ([]byte, error) {
	r := reader{b: p}
	idx, err := r.u32()
	if err != nil {
		return nil, err
	}
	if r.off != len(p) {
		return nil, errTrailing
	}
	return appendU32(nil, rw.fn(idx)), nil
}

// elements renumbers the function indices of element segments, in all
// eight encodings of the format.
func (rw *rewrite) elements(p []byte) ([]byte, error) {
	r := rw.reader(p)
	n, err := r.u32()
	if err != nil {
		return nil, err
	}
	out := appendU32(nil, n)
	for range n {
		flags, err := r.u32()
		if err != nil {
			return nil, err
		}
		if flags > 7 {
			return nil, fmt.Errorf("unknown element segment kind %d", flags)
		}
		out = appendU32(out, flags)
		if flags&0x02 != 0 && flags&0x01 == 0 { // explicit table index
			t, err := r.u32()
			if err != nil {
				return nil, err
			}
			out = appendU32(out, t)
		}
		if flags&0x01 == 0 { // active: offset expression
			if out, err = rw.expr(out, &r); err != nil {
				return nil, err
			}
		}
		if flags&0x03 != 0 { // elemkind byte, or reftype
			start := r.off
			if err := r.valType(); err != nil {
				return nil, err
			}
			out = append(out, r.b[start:r.off]...)
		}
		count, err := r.u32()
		if err != nil {
			return nil, err
		}
		out = appendU32(out, count)
		for range count {
			if flags&0x04 != 0 {
				if out, err = rw.expr(out, &r); err != nil {
					return nil, err
				}
				continue
			}
			idx, err := r.u32()
			if err != nil {
				return nil, err
			}
			out = appendU32(out, rw.fn(idx))
		}
	}
	if r.off != len(p) {
		return nil, errTrailing
	}
	return out, nil
}

// expr copies a constant expression up to and including its end.
func (rw *rewrite) expr(out []byte, r *reader) ([]byte, error) {
	for {
		op, err := r.byte()
		if err != nil {
			return nil, err
		}
		if out, err = rw.instr(out, r, op); err != nil {
			return nil, err
		}
		if op == 0x0B {
			return out, nil
		}
	}
}

// instr copies one instruction whose opcode was just read, renumbering the
// function index of call, return_call and ref.func, and refusing a global
// or type index past the module's own.
func (rw *rewrite) instr(out []byte, r *reader, op byte) ([]byte, error) {
	start := r.off - 1
	switch op {
	case 0x10, 0x12, 0xD2:
		idx, err := r.u32()
		if err != nil {
			return nil, err
		}
		return appendU32(append(out, op), rw.fn(idx)), nil
	case 0x23, 0x24: // global.get, global.set
		idx, err := r.u32()
		if err != nil {
			return nil, err
		}
		if idx >= rw.nglobals {
			return nil, fmt.Errorf("opcode 0x%02x at %d: global %d is past the module's %d globals", op, start, idx, rw.nglobals)
		}
		return append(out, r.b[start:r.off]...), nil
	case 0x11, 0x13, 0x14, 0x15: // call_indirect, return_call_indirect, call_ref, return_call_ref
		idx, err := r.u32()
		if err != nil {
			return nil, err
		}
		if idx >= rw.types {
			return nil, fmt.Errorf("opcode 0x%02x at %d: type %d is past the module's %d types", op, start, idx, rw.types)
		}
		if op == 0x11 || op == 0x13 {
			if _, err := r.u32(); err != nil { // table index
				return nil, err
			}
		}
		return append(out, r.b[start:r.off]...), nil
	case 0x02, 0x03, 0x04: // block, loop, if
		if r.off < len(r.b) {
			if c := r.b[r.off]; c&0xC0 != 0x40 { // not a value type: a type index
				idx, err := r.leb(5)
				if err != nil {
					return nil, err
				}
				if idx >= uint64(rw.types) {
					return nil, fmt.Errorf("opcode 0x%02x at %d: block type %d is past the module's %d types", op, start, idx, rw.types)
				}
				return append(out, r.b[start:r.off]...), nil
			}
		}
	}
	if err := r.skipImmediates(op); err != nil {
		return nil, fmt.Errorf("opcode 0x%02x at %d: %w", op, start, err)
	}
	return append(out, r.b[start:r.off]...), nil
}

func (rw *rewrite) code(p []byte) ([]byte, error) {
	r := rw.reader(p)
	n, err := r.u32()
	if err != nil {
		return nil, err
	}
	out := appendU32(make([]byte, 0, len(p)+len(p)/4), n)
	var body []byte
	for i := range n {
		size, err := r.u32()
		if err != nil {
			return nil, fmt.Errorf("function %d: %w", i, err)
		}
		b, err := r.bytes(int(size))
		if err != nil {
			return nil, fmt.Errorf("function %d: %w", i, err)
		}
		if body, err = rw.body(body[:0], b); err != nil {
			return nil, fmt.Errorf("function %d: %w", i, err)
		}
		out = appendU32(out, uint32(len(body)))
		out = append(out, body...)
	}
	if r.off != len(p) {
		return nil, errTrailing
	}
	return out, nil
}

// body copies one function body, with the check after its locals (unless
// the body opens with a loop, whose own check comes first anyway, as in
// every function Go compiles) and after every loop's block type.
func (rw *rewrite) body(out, b []byte) ([]byte, error) {
	r := rw.reader(b)
	groups, err := r.u32()
	if err != nil {
		return nil, err
	}
	for range groups {
		n, err := r.u32()
		if err != nil {
			return nil, err
		}
		r.limitTypes = n > 0 // wazero does not check the type of no locals
		if err := r.valType(); err != nil {
			return nil, err
		}
		r.limitTypes = true
	}
	out = append(out, b[:r.off]...)
	if r.off >= len(b) || b[r.off] != 0x03 {
		out = append(out, rw.check...)
	}
	for r.off < len(b) {
		op, _ := r.byte()
		switch op {
		case 0x40: // memory.grow
			out = rw.growCheck(out, -1)
		case 0xFC:
			peek := r
			sub, err := peek.u32()
			if err != nil {
				break // instr reports it
			}
			switch sub {
			case 8, 10, 11: // memory.init, memory.copy, memory.fill
				out = rw.charge(out, bulkShift)
			case 12, 14, 17: // table.init, table.copy, table.fill
				out = rw.charge(out, bulkShift-tableShift)
			case 15: // table.grow
				t, err := peek.u32()
				if err != nil {
					break
				}
				out = rw.growCheck(out, int32(t))
			}
		}
		if out, err = rw.instr(out, &r, op); err != nil {
			return nil, err
		}
		if op == 0x03 {
			out = append(out, rw.check...)
		}
	}
	return out, nil
}

// custom renumbers the function-indexed parts of the "name" section and
// drops DWARF, whose code offsets the rewrite moved: stale line
// information would mislead more than none.
func (rw *rewrite) custom(p []byte) ([]byte, error) {
	r := reader{b: p}
	name, err := r.name()
	if err != nil {
		return nil, err
	}
	switch {
	case len(name) > 7 && name[:7] == ".debug_":
		return nil, nil
	case name != "name":
		return p, nil
	}
	out, err := rw.names(p, r)
	if err != nil {
		// Names are only debug information, and wazero skips the
		// subsections it does not read without looking inside: drop a
		// name section the rewrite cannot follow rather than refuse a
		// module wazero would run.
		return nil, nil
	}
	return out, nil
}

// names renumbers the subsections of the name section p, which r has read
// up to its first subsection. It refuses a subsection of names whose
// content is not exactly its size. wazero reads the subsections it decodes
// (0, 1 and 2) without their sizes, so it reads what follows such content,
// or what its size hides, as further subsections, while it counts its way
// to the section's end by the sizes: only where content and sizes agree
// does the renumbered section read as the original does. Toolchains write
// them so; custom drops any other name section.
func (rw *rewrite) names(p []byte, r reader) ([]byte, error) {
	out := append([]byte(nil), p[:r.off]...)
	for r.off < len(p) {
		id, err := r.byte()
		if err != nil {
			return nil, err
		}
		size, err := r.u32()
		if err != nil {
			return nil, err
		}
		sub, err := r.bytes(int(size))
		if err != nil {
			return nil, err
		}
		switch id {
		case 0: // the module name
			if err = wholeName(sub); err != nil {
				return nil, fmt.Errorf("name subsection 0: %w", err)
			}
		case 1, 2, 3: // function, local and label names
			if sub, err = rw.nameMap(sub, id != 1); err != nil {
				return nil, fmt.Errorf("name subsection %d: %w", id, err)
			}
		}
		out = appendU32(append(out, id), uint32(len(sub)))
		out = append(out, sub...)
	}
	return out, nil
}

// nameMap renumbers a name map keyed by function index; when indirect,
// each value is itself a name map, copied as is.
func (rw *rewrite) nameMap(p []byte, indirect bool) ([]byte, error) {
	r := reader{b: p}
	n, err := r.u32()
	if err != nil {
		return nil, err
	}
	out := appendU32(nil, n)
	for range n {
		idx, err := r.u32()
		if err != nil {
			return nil, err
		}
		out = appendU32(out, rw.fn(idx))
		start := r.off
		if indirect {
			m, err := r.u32()
			if err != nil {
				return nil, err
			}
			for range m {
				if _, err := r.u32(); err != nil {
					return nil, err
				}
				if _, err := r.name(); err != nil {
					return nil, err
				}
			}
		} else if _, err := r.name(); err != nil {
			return nil, err
		}
		out = append(out, p[start:r.off]...)
	}
	if r.off != len(p) {
		return nil, errTrailing
	}
	return out, nil
}

// wholeName checks that p is one name and nothing else.
func wholeName(p []byte) error {
	r := reader{b: p}
	if _, err := r.name(); err != nil {
		return err
	}
	if r.off != len(p) {
		return errTrailing
	}
	return nil
}

func appendI32Const(b []byte, v uint32) []byte {
	// i32.const takes a signed LEB128 of the 32 bits; a budget of 2^31 or
	// more is negative as an s32, which the check, counting down to zero,
	// reads as the same unsigned number.
	b = append(b, 0x41)
	x := int64(int32(v))
	for {
		c := byte(x & 0x7F)
		x >>= 7
		if (x == 0 && c&0x40 == 0) || (x == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}
