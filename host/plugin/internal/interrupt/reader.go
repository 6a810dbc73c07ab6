package interrupt

import (
	"errors"
	"fmt"
)

// reader decodes the parts of the binary format the rewrite needs to walk.
// With limitTypes set, it refuses a heap type naming one of the types the
// rewrite appends after the module's types: such a module is invalid, and
// the rewrite would make it valid. (A name further on stays invalid
// after the rewrite, and wazero does not check every place a heap type can
// appear, so those are left to wazero.)
type reader struct {
	b          []byte
	off        int
	types      uint32
	limitTypes bool
}

func (r *reader) byte() (byte, error) {
	if r.off >= len(r.b) {
		return 0, errTruncated
	}
	c := r.b[r.off]
	r.off++
	return c, nil
}

func (r *reader) bytes(n int) ([]byte, error) {
	if n < 0 || n > len(r.b)-r.off {
		return nil, errTruncated
	}
	p := r.b[r.off : r.off+n]
	r.off += n
	return p, nil
}

// leb skips an LEB128 number of at most maxBytes bytes and returns its
// unsigned value (meaningful for u32 only).
func (r *reader) leb(maxBytes int) (uint64, error) {
	var v uint64
	for i := 0; i < maxBytes; i++ {
		c, err := r.byte()
		if err != nil {
			return 0, err
		}
		v |= uint64(c&0x7F) << (7 * i)
		if c&0x80 == 0 {
			return v, nil
		}
	}
	return 0, errors.New("LEB128 number too long")
}

func (r *reader) u32() (uint32, error) {
	v, err := r.leb(5)
	if err != nil {
		return 0, err
	}
	if v > 1<<32-1 {
		return 0, errors.New("u32 out of range")
	}
	return uint32(v), nil
}

func (r *reader) name() (string, error) {
	n, err := r.u32()
	if err != nil {
		return "", err
	}
	p, err := r.bytes(int(n))
	return string(p), err
}

func (r *reader) limits() error {
	flags, err := r.byte()
	if err != nil {
		return err
	}
	if _, err := r.leb(10); err != nil {
		return err
	}
	if flags&0x01 != 0 {
		_, err = r.leb(10)
	}
	return err
}

func (r *reader) memarg() error {
	align, err := r.u32()
	if err != nil {
		return err
	}
	if align&0x40 != 0 { // multi-memory: a memory index follows
		if _, err := r.u32(); err != nil {
			return err
		}
	}
	_, err = r.leb(10)
	return err
}

// valType skips a value type: one byte, or for the typed references of
// the function-references proposal (ref ht, ref null ht) the byte and a
// heap type.
func (r *reader) valType() error {
	c, err := r.byte()
	if err != nil {
		return err
	}
	if c == 0x63 || c == 0x64 {
		err = r.heapType()
	}
	return err
}

// heapType skips a heap type: an s33, negative for an abstract type (one
// byte), else a type index.
func (r *reader) heapType() error {
	start := r.off
	v, err := r.leb(5)
	if err != nil {
		return err
	}
	if r.b[r.off-1]&0x40 != 0 { // negative: sign bit of the last byte
		return nil
	}
	if r.limitTypes && v >= uint64(r.types) && v < uint64(r.types)+addedTypes {
		return fmt.Errorf("heap type at %d names type %d, past the module's %d types", start, v, r.types)
	}
	return nil
}

func (r *reader) blockType() error {
	c, err := r.byte()
	if err != nil {
		return err
	}
	switch c {
	case 0x40, 0x7F, 0x7E, 0x7D, 0x7C, 0x7B, 0x70, 0x6F:
		return nil
	case 0x63, 0x64:
		return r.heapType()
	}
	r.off--
	_, err = r.leb(5) // s33 type index
	return err
}

// funcType skips a function type, 0x60 and its parameter and result
// types.
func (r *reader) funcType() error {
	c, err := r.byte()
	if err != nil {
		return err
	}
	if c != 0x60 {
		return fmt.Errorf("type form 0x%02x, not a function type", c)
	}
	if err := r.valTypes(); err != nil { // parameters
		return err
	}
	return r.valTypes() // results
}

// valTypes skips a vector of value types.
func (r *reader) valTypes() error {
	n, err := r.u32()
	if err != nil {
		return err
	}
	for range n {
		if err := r.valType(); err != nil {
			return err
		}
	}
	return nil
}

// tableType skips a table type, with the initializer expression of the
// function-references proposal (0x40 0x00 prefix) when it has one, which
// it returns unread at r.off: init tells whether one follows.
func (r *reader) tableType() (t Table, init bool, err error) {
	if r.off < len(r.b) && r.b[r.off] == 0x40 {
		r.off++
		c, err := r.byte()
		if err != nil {
			return Table{}, false, err
		}
		if c != 0x00 {
			return Table{}, false, fmt.Errorf("table prefix 0x40 0x%02x", c)
		}
		init = true
	}
	if err := r.valType(); err != nil {
		return Table{}, false, err
	}
	t, err = r.tableLimits()
	return t, init, err
}

// skipExpr skips a constant expression and its end.
func (r *reader) skipExpr() error {
	for {
		op, err := r.byte()
		if err != nil {
			return err
		}
		if op == 0x0B {
			return nil
		}
		if err := r.skipImmediates(op); err != nil {
			return err
		}
	}
}

func (r *reader) u32s(n int) error {
	for range n {
		if _, err := r.u32(); err != nil {
			return err
		}
	}
	return nil
}

// skipImmediates moves past the immediates of op, per the WebAssembly 2.0
// binary format plus the tail-call, typed function references, threads and
// SIMD proposals.
func (r *reader) skipImmediates(op byte) error {
	switch {
	case op <= 0x01, op == 0x05, op == 0x0B, op == 0x0F, op == 0x1A, op == 0x1B, op == 0xD1,
		op >= 0x45 && op <= 0xC4:
		return nil
	case op >= 0x02 && op <= 0x04:
		return r.blockType()
	case op == 0x0C, op == 0x0D, op == 0x10, op == 0x12, op == 0xD2,
		op >= 0x20 && op <= 0x26, op == 0x3F, op == 0x40,
		op == 0x14, op == 0x15, op == 0xD5, op == 0xD6: // call_ref, return_call_ref, br_on_null, br_on_non_null
		return r.u32s(1)
	case op == 0xD4: // ref.as_non_null
		return nil
	case op == 0x0E:
		n, err := r.u32()
		if err != nil {
			return err
		}
		return r.u32s(int(n) + 1)
	case op == 0x11, op == 0x13:
		return r.u32s(2)
	case op == 0x1C: // select with types
		return r.valTypes()
	case op >= 0x28 && op <= 0x3E:
		return r.memarg()
	case op == 0x41:
		_, err := r.leb(5)
		return err
	case op == 0x42:
		_, err := r.leb(10)
		return err
	case op == 0x43:
		_, err := r.bytes(4)
		return err
	case op == 0x44:
		_, err := r.bytes(8)
		return err
	case op == 0xD0: // ref.null: a heap type
		return r.heapType()
	case op == 0xFC:
		return r.skipFC()
	case op == 0xFD:
		return r.skipSIMD()
	case op == 0xFE:
		return r.skipAtomic()
	}
	return fmt.Errorf("unknown opcode")
}

func (r *reader) skipFC() error {
	sub, err := r.u32()
	if err != nil {
		return err
	}
	switch {
	case sub <= 7: // saturating truncations
		return nil
	case sub == 8, sub == 10, sub == 12, sub == 14: // memory.init, memory.copy, table.init, table.copy
		return r.u32s(2)
	case sub <= 17: // data.drop, memory.fill, elem.drop, table.grow/size/fill
		return r.u32s(1)
	}
	return fmt.Errorf("unknown 0xFC sub-opcode %d", sub)
}

func (r *reader) skipSIMD() error {
	sub, err := r.u32()
	if err != nil {
		return err
	}
	switch {
	case sub <= 11, sub == 92, sub == 93: // loads and stores
		return r.memarg()
	case sub == 12, sub == 13: // v128.const, i8x16.shuffle
		_, err := r.bytes(16)
		return err
	case sub >= 21 && sub <= 34: // lane extract and replace
		_, err := r.byte()
		return err
	case sub >= 84 && sub <= 91: // lane loads and stores
		if err := r.memarg(); err != nil {
			return err
		}
		_, err := r.byte()
		return err
	case sub <= 275:
		return nil
	}
	return fmt.Errorf("unknown SIMD sub-opcode %d", sub)
}

func (r *reader) skipAtomic() error {
	sub, err := r.u32()
	if err != nil {
		return err
	}
	switch {
	case sub == 0x03: // atomic.fence
		_, err := r.byte()
		return err
	case sub <= 0x02, sub >= 0x10 && sub <= 0x4E:
		return r.memarg()
	}
	return fmt.Errorf("unknown atomic sub-opcode %d", sub)
}

func appendU32(b []byte, v uint32) []byte {
	for {
		c := byte(v & 0x7F)
		v >>= 7
		if v == 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func appendName(b []byte, s string) []byte {
	return append(appendU32(b, uint32(len(s))), s...)
}
