// Package wasmtest assembles WebAssembly modules byte by byte for tests,
// where a module must do what no compiler would emit (an index past the
// module's own, a start function that spins) or exactly one instruction
// (a 16 MiB memory.fill, a table.grow). The encoders are written apart
// from package interrupt's own, so a mistake in one cannot hide one in the
// other.
package wasmtest

import "bytes"

// Section ids.
const (
	SecType     = 1
	SecImport   = 2
	SecFunction = 3
	SecTable    = 4
	SecMemory   = 5
	SecGlobal   = 6
	SecExport   = 7
	SecStart    = 8
	SecElement  = 9
	SecCode     = 10
	SecData     = 11
)

// Value types and export kinds.
const (
	I32     = 0x7F
	FuncRef = 0x70

	ExportFunc   = 0x00
	ExportMemory = 0x02
)

// Opcodes.
const (
	OpUnreachable = 0x00
	OpLoop        = 0x03
	OpIf          = 0x04
	OpEnd         = 0x0B
	OpBr          = 0x0C
	OpCall        = 0x10
	OpDrop        = 0x1A
	OpGlobalGet   = 0x23
	OpGlobalSet   = 0x24
	OpI32Eqz      = 0x45
	OpI32Eq       = 0x46
	OpI32Ne       = 0x47
	OpI32GeS      = 0x4E
	OpI32Add      = 0x6A
	OpRefFunc     = 0xD2
	OpPrefixFC    = 0xFC
	OpMemoryGrow  = 0x40

	FCMemoryFill = 11
	FCTableGrow  = 15

	BlockEmpty = 0x40
)

// Leb is the unsigned LEB128 encoding of v.
func Leb(v uint64) []byte {
	var b []byte
	for {
		c := byte(v & 0x7F)
		v >>= 7
		if v == 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// Sleb is the signed LEB128 encoding of v.
func Sleb(v int64) []byte {
	var b []byte
	for {
		c := byte(v & 0x7F)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// Cat concatenates byte slices.
func Cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// Vec is a vector: its length, then its items.
func Vec(items ...[]byte) []byte { return Cat(Leb(uint64(len(items))), Cat(items...)) }

// Str is a name: its length, then its bytes.
func Str(s string) []byte { return Cat(Leb(uint64(len(s))), []byte(s)) }

// Sec is a section with its id and size.
func Sec(id byte, payload ...[]byte) []byte {
	p := Cat(payload...)
	return Cat([]byte{id}, Leb(uint64(len(p))), p)
}

// Module is a binary module of the given sections.
func Module(sections ...[]byte) []byte {
	return Cat([]byte("\x00asm\x01\x00\x00\x00"), Cat(sections...))
}

// FuncType is a function type.
func FuncType(params, results []byte) []byte {
	return Cat([]byte{0x60}, Leb(uint64(len(params))), params, Leb(uint64(len(results))), results)
}

// Op is an instruction with u32 immediates.
func Op(code byte, imm ...uint32) []byte {
	b := []byte{code}
	for _, v := range imm {
		b = append(b, Leb(uint64(v))...)
	}
	return b
}

// I32Const is i32.const v.
func I32Const(v int32) []byte { return Cat([]byte{0x41}, Sleb(int64(v))) }

// ConstExpr is a constant expression with its end.
func ConstExpr(code ...[]byte) []byte { return Cat(Cat(code...), []byte{OpEnd}) }

// Body is a function body with its size, its locals (count, type pairs;
// nil for none) and its final end.
func Body(locals []byte, code ...[]byte) []byte {
	if locals == nil {
		locals = Leb(0)
	}
	b := Cat(locals, Cat(code...), []byte{OpEnd})
	return Cat(Leb(uint64(len(b))), b)
}

// ImportFunc is a function import of type typ.
func ImportFunc(mod, name string, typ uint32) []byte {
	return Cat(Str(mod), Str(name), []byte{0x00}, Leb(uint64(typ)))
}

// Export is an export of kind and index.
func Export(name string, kind byte, idx uint32) []byte {
	return Cat(Str(name), []byte{kind}, Leb(uint64(idx)))
}
