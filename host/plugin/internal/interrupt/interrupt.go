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
// fast path compiles to a load, a branch and a store. The host call every
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

// Import module and name of the host function the rewritten module calls
// when its budget runs out. Its type is () -> i32: the new budget, or 0 to
// stop.
const (
	Module = "lkedge"
	Name   = "interrupt_check"
)

// Section ids.
const (
	secCustom    = 0
	secType      = 1
	secImport    = 2
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

var errTruncated = errors.New("truncated module")

type section struct {
	id      byte
	payload []byte
}

// rewrite holds what the rewrite needs to know about the module.
type rewrite struct {
	importedFuncs uint32 // functions at or above this index shift by one
	check         []byte // the budget check, inserted at entries and loops
}

func (rw *rewrite) fn(idx uint32) uint32 {
	if idx >= rw.importedFuncs {
		return idx + 1
	}
	return idx
}

// Instrument returns a copy of the module with the budget checks inserted.
// budget is the number of checks between two host calls. It refuses a
// module that uses instructions it does not know, since a loop it could not
// see would leave the plugin unstoppable.
func Instrument(wasm []byte, budget uint32) ([]byte, error) {
	if len(wasm) < 8 || !bytes.Equal(wasm[:4], []byte("\x00asm")) {
		return nil, errors.New("not a WebAssembly binary (bad magic)")
	}
	if v := binary.LittleEndian.Uint32(wasm[4:8]); v != 1 {
		return nil, fmt.Errorf("unsupported WebAssembly binary version %d", v)
	}
	if budget == 0 {
		return nil, errors.New("budget must be positive")
	}
	secs, err := sections(wasm)
	if err != nil {
		return nil, err
	}

	// The new type, global and import are appended after their kind's
	// existing entries, so that only defined functions shift by one.
	types := find(secs, secType)
	ntypes, err := vecLen(types)
	if err != nil {
		return nil, fmt.Errorf("type section: %w", err)
	}
	secs = upsert(secs, secType, appendVecItem(types, ntypes, []byte{0x60, 0x00, 0x01, 0x7F}))

	imports := find(secs, secImport)
	nimports, funcs, globalImports, err := countImports(imports)
	if err != nil {
		return nil, fmt.Errorf("import section: %w", err)
	}
	imp := appendName(appendName(nil, Module), Name)
	imp = appendU32(append(imp, 0x00), ntypes)
	secs = upsert(secs, secImport, appendVecItem(imports, nimports, imp))

	rw := &rewrite{importedFuncs: funcs}
	globals := find(secs, secGlobal)
	var nglobals uint32
	var gpayload []byte
	if globals != nil {
		if gpayload, nglobals, err = rw.globals(globals.payload); err != nil {
			return nil, fmt.Errorf("global section: %w", err)
		}
		globals.payload = gpayload
	}
	g := globalImports + nglobals
	newGlobal := append(appendI32Const([]byte{0x7F, 0x01}, budget), 0x0B)
	secs = upsert(secs, secGlobal, appendVecItem(find(secs, secGlobal), nglobals, newGlobal))

	rw.check = budgetCheck(funcs, g)
	for i := range secs {
		s := &secs[i]
		var p []byte
		switch s.id {
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

func vecLen(s *section) (uint32, error) {
	if s == nil {
		return 0, nil
	}
	return (&reader{b: s.payload}).u32()
}

// appendVecItem returns a vector section payload with item appended.
func appendVecItem(s *section, n uint32, item []byte) []byte {
	out := appendU32(nil, n+1)
	if s != nil {
		r := reader{b: s.payload}
		_, _ = r.u32() // the count was read successfully before
		out = append(out, s.payload[r.off:]...)
	}
	return append(out, item...)
}

func countImports(s *section) (n, funcs, globals uint32, err error) {
	if s == nil {
		return 0, 0, 0, nil
	}
	r := reader{b: s.payload}
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
			_, err = r.u32()
		case 0x01: // table: reftype, limits
			if _, err = r.byte(); err == nil {
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
	return n, funcs, globals, nil
}

// globals renumbers ref.func in the initializers of the global section.
func (rw *rewrite) globals(p []byte) ([]byte, uint32, error) {
	r := reader{b: p}
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
	return out, n, nil
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
		if kind == 0x00 {
			idx = rw.fn(idx)
		}
		out = appendU32(out, idx)
	}
	return out, nil
}

func (rw *rewrite) start(p []byte) ([]byte, error) {
	idx, err := (&reader{b: p}).u32()
	if err != nil {
		return nil, err
	}
	return appendU32(nil, rw.fn(idx)), nil
}

// elements renumbers the function indices of element segments, in all
// eight encodings of the format.
func (rw *rewrite) elements(p []byte) ([]byte, error) {
	r := reader{b: p}
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
// function index of call, return_call and ref.func.
func (rw *rewrite) instr(out []byte, r *reader, op byte) ([]byte, error) {
	start := r.off - 1
	switch op {
	case 0x10, 0x12, 0xD2:
		idx, err := r.u32()
		if err != nil {
			return nil, err
		}
		return appendU32(append(out, op), rw.fn(idx)), nil
	}
	if err := r.skipImmediates(op); err != nil {
		return nil, fmt.Errorf("opcode 0x%02x at %d: %w", op, start, err)
	}
	return append(out, r.b[start:r.off]...), nil
}

func (rw *rewrite) code(p []byte) ([]byte, error) {
	r := reader{b: p}
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
		return nil, errors.New("trailing bytes")
	}
	return out, nil
}

// body copies one function body, with the check after its locals (unless
// the body opens with a loop, whose own check comes first anyway, as in
// every function Go compiles) and after every loop's block type.
func (rw *rewrite) body(out, b []byte) ([]byte, error) {
	r := reader{b: b}
	groups, err := r.u32()
	if err != nil {
		return nil, err
	}
	for range groups {
		if _, err := r.u32(); err != nil {
			return nil, err
		}
		if err := r.valType(); err != nil {
			return nil, err
		}
	}
	out = append(out, b[:r.off]...)
	if r.off >= len(b) || b[r.off] != 0x03 {
		out = append(out, rw.check...)
	}
	for r.off < len(b) {
		op, _ := r.byte()
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
// up to its first subsection.
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
		if id >= 1 && id <= 3 { // function, local and label names
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
	return out, nil
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
