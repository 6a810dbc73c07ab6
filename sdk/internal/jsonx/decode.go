// Package jsonx reads and writes JSON without reflection. A plugin is a Go
// program compiled to WebAssembly, where reflection is slow: a byte scanner
// plus a switch per type decodes an event several times faster than
// encoding/json (docs/benchmarks.md).
//
// The decoder reproduces encoding/json's Unmarshal exactly for the shapes
// the SDK uses: the same input is accepted or refused, null leaves scalars
// alone and clears pointers, slices and maps, object keys match field names
// exactly or else case-insensitively, a repeated key decodes into what the
// first one left, invalid UTF-8 becomes U+FFFD, and nesting stops at 10000.
// The SDK's tests hold it to that against encoding/json itself.
package jsonx

import (
	"encoding/binary"
	"errors"
	"math/bits"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// maxDepth is encoding/json's nesting limit.
const maxDepth = 10000

// Decoder reads one JSON document from memory.
type Decoder struct {
	data []byte
	// str is data as a string, copied once, so that decoded strings and
	// object keys are slices of it rather than an allocation each; Valid
	// leaves it empty, needing no values.
	str     string
	off     int
	depth   int
	unknown bool
}

// NewDecoder starts reading data.
func NewDecoder(data []byte) *Decoder { return &Decoder{data: data, str: string(data)} }

// Valid tells whether data is one well-formed JSON value, as json.Valid
// does, at a fraction of its cost in wasm.
func Valid(data []byte) bool {
	d := Decoder{data: data}
	return d.Skip() == nil && d.End() == nil
}

// Error is a malformed document or a value of the wrong type, with where
// it was found, so a plugin author can tell which field of which event was
// refused.
type Error struct {
	// Offset is the byte offset in the document.
	Offset int
	Msg    string
	// path holds the object keys and array indexes leading to the value,
	// innermost first (it grows as the error travels outwards).
	path []string
}

// Error reads "json: <path>: <what> at offset <n>", the path in the
// document's own names (egressInfo.fileResults[0].size).
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("json: ")
	if len(e.path) > 0 {
		for i := len(e.path) - 1; i >= 0; i-- {
			p := e.path[i]
			if i < len(e.path)-1 && (p == "" || p[0] != '[') {
				b.WriteByte('.')
			}
			b.WriteString(p)
		}
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	b.WriteString(" at offset ")
	b.WriteString(strconv.Itoa(e.Offset))
	return b.String()
}

// fail reports msg at the current offset.
func (d *Decoder) fail(msg string) error { return &Error{Offset: d.off, Msg: msg} }

// Unknown is what an Object callback returns for a key it does not know,
// having consumed nothing: the decoder then tries the case-insensitive
// match and otherwise skips the value. (A flag, not an error value: an
// interface comparison per key costs a call in wasm.)
func (d *Decoder) Unknown() error {
	d.unknown = true
	return nil
}

func within(err error, elem string) error {
	var e *Error
	if errors.As(err, &e) {
		// A clone, since a key from NewAliasingDecoder aliases the
		// document, which may change once the error is returned.
		e.path = append(e.path, strings.Clone(elem))
	}
	return err
}

// ws skips whitespace and returns the next byte, or 0 at the end. It is
// small enough to be inlined, which in wasm saves a call per token.
func (d *Decoder) ws() byte {
	for ; d.off < len(d.data); d.off++ {
		if c := d.data[d.off]; c > ' ' || (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
			return c
		}
	}
	return 0
}

// Eight bytes at a time (one i64.load in wasm): whether any byte of x is
// less than n (n <= 128; exact as a yes or no).
const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

func anyLess(x, n uint64) uint64 { return (x - n*lsb) &^ x & msb }

// special marks the bytes of x that end the fast path of a string: a
// quote, a backslash, a control character or non-ASCII. Only the lowest
// mark is sure to be right (a borrow can mark a byte above it), and only
// the lowest is used.
func special(x uint64) uint64 {
	return anyLess(x^('"'*lsb), 1) | anyLess(x^('\\'*lsb), 1) | anyLess(x, ' ') | x&msb
}

// End checks that only whitespace follows the document.
func (d *Decoder) End() error {
	if d.ws(); d.off < len(d.data) {
		return d.fail("invalid character " + quoteByte(d.data[d.off]) + " after top-level value")
	}
	return nil
}

func quoteByte(c byte) string {
	if c < ' ' || c >= utf8.RuneSelf {
		return "0x" + strconv.FormatUint(uint64(c), 16)
	}
	return strconv.QuoteRune(rune(c))
}

// kind names the value that starts with c, for error messages.
func kind(c byte) string {
	switch {
	case c == '{':
		return "object"
	case c == '[':
		return "array"
	case c == '"':
		return "string"
	case c == 't' || c == 'f':
		return "bool"
	case c == 'n':
		return "null"
	case c == '-' || ('0' <= c && c <= '9'):
		return "number"
	case c == 0:
		return "end of input"
	}
	return "invalid character " + quoteByte(c)
}

// wrongType reports a well-formed value of the wrong type. The value is
// still checked, so that a malformed document always gets a syntax error
// as it does from encoding/json, whatever the field types are.
func (d *Decoder) wrongType(want string) error {
	c := d.ws()
	at := d.off
	if err := d.Skip(); err != nil {
		return err
	}
	return &Error{Offset: at, Msg: "cannot decode " + kind(c) + " into " + want}
}

// Null consumes a null literal if one comes next.
func (d *Decoder) Null() bool {
	if d.ws() == 'n' && d.off+4 <= len(d.data) && string(d.data[d.off:d.off+4]) == "null" {
		d.off += 4
		return true
	}
	return false
}

func (d *Decoder) literal(lit string) error {
	if d.off+len(lit) > len(d.data) || string(d.data[d.off:d.off+len(lit)]) != lit {
		for i := 0; i < len(lit); i++ {
			if d.off+i >= len(d.data) {
				d.off += i
				return d.fail("unexpected end of input in literal")
			}
			if d.data[d.off+i] != lit[i] {
				d.off += i
				return d.fail("invalid character " + quoteByte(d.data[d.off]) + " in literal")
			}
		}
	}
	d.off += len(lit)
	return nil
}

// Skip consumes one value of any type, checking that it is well-formed.
// It is one loop with an explicit stack rather than a recursion through
// Object and Array, because in wasm a call costs as much as scanning tens
// of bytes, and skipping is what the decoder does with every field it
// does not type.
func (d *Decoder) Skip() error {
	data := d.data
	var inObject []bool // per open container: object (true) or array
	var stack [32]bool
	inObject = stack[:0]
	d.ws()
	i := d.off
value:
	for i < len(data) && isSpace(data[i]) {
		i++
	}
	if i >= len(data) {
		d.off = i
		return d.fail("unexpected end of input looking for beginning of value")
	}
	switch c := data[i]; {
	case c == '{' || c == '[':
		if d.depth+len(inObject)+1 > maxDepth {
			d.off = i
			return d.fail("exceeded max depth")
		}
		inObject = append(inObject, c == '{')
		i++
		for i < len(data) && isSpace(data[i]) {
			i++
		}
		if i < len(data) && (data[i] == '}' && c == '{' || data[i] == ']' && c == '[') {
			inObject = inObject[:len(inObject)-1]
			i++
			goto next
		}
		if c == '[' {
			goto value
		}
		goto key
	case c == '"':
		d.off = i
		if _, err := d.string(); err != nil {
			return err
		}
		i = d.off
	case c == 't' || c == 'f' || c == 'n':
		d.off = i
		lit := "null"
		if c == 't' {
			lit = "true"
		} else if c == 'f' {
			lit = "false"
		}
		if err := d.literal(lit); err != nil {
			return err
		}
		i = d.off
	case isNumberStart(c):
		d.off = i
		if _, err := d.number(); err != nil {
			return err
		}
		i = d.off
	default:
		d.off = i
		return d.fail("invalid character " + quoteByte(c) + " looking for beginning of value")
	}
next:
	if len(inObject) == 0 {
		d.off = i
		return nil
	}
	for i < len(data) && isSpace(data[i]) {
		i++
	}
	if i >= len(data) {
		d.off = i
		return d.fail("unexpected end of input")
	}
	switch c, obj := data[i], inObject[len(inObject)-1]; {
	case c == ',':
		i++
		if obj {
			goto key
		}
		goto value
	case c == '}' && obj, c == ']' && !obj:
		inObject = inObject[:len(inObject)-1]
		i++
		goto next
	case obj:
		d.off = i
		return d.fail("invalid character " + quoteByte(c) + " after object key:value pair")
	default:
		d.off = i
		return d.fail("invalid character " + quoteByte(c) + " after array element")
	}
key:
	for i < len(data) && isSpace(data[i]) {
		i++
	}
	if i >= len(data) || data[i] != '"' {
		d.off = i
		if i >= len(data) {
			return d.fail("unexpected end of input looking for object key")
		}
		return d.fail("invalid character " + quoteByte(data[i]) + " looking for beginning of object key string")
	}
	d.off = i
	if _, err := d.string(); err != nil {
		return err
	}
	i = d.off
	for i < len(data) && isSpace(data[i]) {
		i++
	}
	if i >= len(data) || data[i] != ':' {
		d.off = i
		if i >= len(data) {
			return d.fail("unexpected end of input after object key")
		}
		return d.fail("invalid character " + quoteByte(data[i]) + " after object key")
	}
	i++
	goto value
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// Raw consumes one value and returns its bytes, which alias the document.
func (d *Decoder) Raw() ([]byte, error) {
	d.ws()
	start := d.off
	if err := d.Skip(); err != nil {
		return nil, err
	}
	return d.data[start:d.off:d.off], nil
}

func (d *Decoder) enter() error {
	d.depth++
	if d.depth > maxDepth {
		return d.fail("exceeded max depth")
	}
	return nil
}

// Object consumes an object, calling field for each key with the decoder
// at the key's value. field either consumes the value or returns
// d.Unknown(); then a key equal to one of names under Unicode case folding
// is tried again under that name (encoding/json's rule), and anything else
// is skipped.
func (d *Decoder) Object(names []string, field func(key string) error) error {
	if c := d.ws(); c != '{' {
		return d.wrongType("object")
	}
	if err := d.enter(); err != nil {
		return err
	}
	d.off++
	if d.ws() == '}' {
		d.off++
		d.depth--
		return nil
	}
	for {
		if c := d.ws(); c != '"' {
			if c == 0 {
				return d.fail("unexpected end of input looking for object key")
			}
			return d.fail("invalid character " + quoteByte(c) + " looking for beginning of object key string")
		}
		key, err := d.string()
		if err != nil {
			return err
		}
		if c := d.ws(); c != ':' {
			if c == 0 {
				return d.fail("unexpected end of input after object key")
			}
			return d.fail("invalid character " + quoteByte(c) + " after object key")
		}
		d.off++
		err = field(key)
		if d.unknown {
			d.unknown = false
			if name := foldMatch(key, names); name != "" {
				err = field(name)
			} else {
				err = d.Skip()
			}
		}
		if err != nil {
			return within(err, key)
		}
		switch c := d.ws(); c {
		case ',':
			d.off++
		case '}':
			d.off++
			d.depth--
			return nil
		case 0:
			return d.fail("unexpected end of input after object key:value pair")
		default:
			return d.fail("invalid character " + quoteByte(c) + " after object key:value pair")
		}
	}
}

func foldMatch(key string, names []string) string {
	for _, n := range names {
		if len(key) >= len(n) && strings.EqualFold(key, n) {
			return n
		}
	}
	return ""
}

// Array consumes an array, calling elem with each index and the decoder at
// the element, which elem must consume.
func (d *Decoder) Array(elem func(i int) error) error {
	if c := d.ws(); c != '[' {
		return d.wrongType("array")
	}
	if err := d.enter(); err != nil {
		return err
	}
	d.off++
	if d.ws() == ']' {
		d.off++
		d.depth--
		return nil
	}
	for i := 0; ; i++ {
		if err := elem(i); err != nil {
			return within(err, "["+strconv.Itoa(i)+"]")
		}
		switch c := d.ws(); c {
		case ',':
			d.off++
		case ']':
			d.off++
			d.depth--
			return nil
		case 0:
			return d.fail("unexpected end of input after array element")
		default:
			return d.fail("invalid character " + quoteByte(c) + " after array element")
		}
	}
}

// string consumes a string (d.data[d.off] is its opening quote) and
// returns it decoded: a slice of d.str when it has no escapes and only
// ASCII, which is the common case and costs nothing, a new string
// otherwise.
func (d *Decoder) string() (string, error) {
	data := d.data
	start := d.off + 1
	i := start
	for i+8 <= len(data) {
		if m := special(binary.LittleEndian.Uint64(data[i:])); m != 0 {
			i += bits.TrailingZeros64(m) >> 3 // the first special byte
			goto found
		}
		i += 8
	}
	for i < len(data) && plain[data[i]] != 0 {
		i++
	}
	if i >= len(data) {
		d.off = len(data)
		return "", d.fail("unexpected end of input in string literal")
	}
found:
	if data[i] == '"' {
		d.off = i + 1
		return d.text(start, i), nil
	}
	return d.slowString(start, i)
}

// plain marks the bytes a string can hold as they are: printable ASCII
// other than the quote and the backslash.
var plain = func() (t [256]byte) {
	for c := ' '; c < utf8.RuneSelf; c++ {
		if c != '"' && c != '\\' {
			t[c] = 1
		}
	}
	return t
}()

// slowString decodes a string with escapes, control characters or
// non-ASCII bytes from i on, as encoding/json does: invalid UTF-8 and lone
// surrogates become U+FFFD.
func (d *Decoder) slowString(start, i int) (string, error) {
	out := make([]byte, i-start, i-start+16)
	copy(out, d.data[start:i])
	for i < len(d.data) {
		c := d.data[i]
		switch {
		case c == '"':
			d.off = i + 1
			return string(out), nil
		case c < ' ':
			d.off = i
			return "", d.fail("invalid character " + quoteByte(c) + " in string literal")
		case c == '\\':
			if i+1 >= len(d.data) {
				d.off = len(d.data)
				return "", d.fail("unexpected end of input in string escape code")
			}
			switch e := d.data[i+1]; e {
			case '"', '\\', '/':
				out = append(out, e)
				i += 2
			case 'b':
				out = append(out, '\b')
				i += 2
			case 'f':
				out = append(out, '\f')
				i += 2
			case 'n':
				out = append(out, '\n')
				i += 2
			case 'r':
				out = append(out, '\r')
				i += 2
			case 't':
				out = append(out, '\t')
				i += 2
			case 'u':
				r, n := d.u4(i)
				if n < 0 {
					return "", d.fail("invalid character in \\u hexadecimal character escape")
				}
				i += 6
				if utf16.IsSurrogate(r) {
					if r2, n2 := d.u4(i); n2 > 0 {
						if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
							out = utf8.AppendRune(out, dec)
							i += 6
							break
						}
					}
					r = utf8.RuneError
				}
				out = utf8.AppendRune(out, r)
			default:
				d.off = i + 1
				return "", d.fail("invalid character " + quoteByte(e) + " in string escape code")
			}
		case c < utf8.RuneSelf:
			out = append(out, c)
			i++
		default:
			r, size := utf8.DecodeRune(d.data[i:])
			if r == utf8.RuneError && size == 1 {
				out = utf8.AppendRune(out, utf8.RuneError)
			} else {
				out = append(out, d.data[i:i+size]...)
			}
			i += size
		}
	}
	d.off = len(d.data)
	return "", d.fail("unexpected end of input in string literal")
}

// u4 reads the \uXXXX escape at i. It returns n < 0 if there is none; for
// a lookahead that is not an escape the caller just carries on, but for
// the escape being decoded it is a syntax error, with d.off at the fault.
func (d *Decoder) u4(i int) (rune, int) {
	if i+1 >= len(d.data) || d.data[i] != '\\' || d.data[i+1] != 'u' {
		d.off = i
		return 0, -1
	}
	var r rune
	for j := i + 2; j < i+6; j++ {
		if j >= len(d.data) {
			d.off = j
			return 0, -1
		}
		c := d.data[j]
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			d.off = j
			return 0, -1
		}
		r = r*16 + rune(c)
	}
	return r, 6
}

// number consumes a number and returns its text, checked against JSON's
// grammar.
func (d *Decoder) number() (string, error) {
	start, i := d.off, d.off
	n := len(d.data)
	digits := func() bool {
		j := i
		for i < n && '0' <= d.data[i] && d.data[i] <= '9' {
			i++
		}
		return i > j
	}
	if i < n && d.data[i] == '-' {
		i++
	}
	switch {
	case i < n && d.data[i] == '0':
		i++
	case i < n && '1' <= d.data[i] && d.data[i] <= '9':
		digits()
	default:
		d.off = i
		return "", d.fail("invalid number")
	}
	if i < n && d.data[i] == '.' {
		i++
		if !digits() {
			d.off = i
			return "", d.fail("invalid number: no digits after the decimal point")
		}
	}
	if i < n && (d.data[i] == 'e' || d.data[i] == 'E') {
		i++
		if i < n && (d.data[i] == '+' || d.data[i] == '-') {
			i++
		}
		if !digits() {
			d.off = i
			return "", d.fail("invalid number: no digits in the exponent")
		}
	}
	d.off = i
	return d.text(start, i), nil
}

// text is d.data[start:end] as a string, free of charge; when only
// validating there is no string to slice, and no one wants the text.
func (d *Decoder) text(start, end int) string {
	if d.str == "" {
		return ""
	}
	return d.str[start:end]
}

// NewAliasingDecoder starts reading data without copying it: the strings
// it returns alias data, so they are valid only while data is left
// unchanged, and a caller clones those it keeps. It is for reading a few
// fields of a large document, where copying all of it into one string
// costs more than the fields (in wasm, about 1.5 µs per KB).
func NewAliasingDecoder(data []byte) *Decoder {
	return &Decoder{data: data, str: unsafe.String(unsafe.SliceData(data), len(data))}
}

// Offset is how far the decoder has read, in bytes.
func (d *Decoder) Offset() int { return d.off }

// Span consumes one value and returns its bytes, which alias the document,
// checking an object or an array no further than that its brackets
// balance outside strings: for a value decoded later if at all, where
// checking it now would cost about as much as decoding it. For well-formed
// JSON the bytes are exactly the value, as Raw returns; for malformed JSON
// they may end elsewhere, and decoding them finds the fault. It refuses
// nesting past encoding/json's limit, as Skip does, and never reads past
// the document.
func (d *Decoder) Span() ([]byte, error) {
	c := d.ws()
	if c != '{' && c != '[' {
		return d.Raw()
	}
	data := d.data
	start := d.off
	nest := 0
	for i := start; i < len(data); {
		for i+8 <= len(data) {
			if m := structural(binary.LittleEndian.Uint64(data[i:])); m != 0 {
				i += bits.TrailingZeros64(m) >> 3
				break
			}
			i += 8
		}
		if i >= len(data) {
			break
		}
		switch data[i] {
		case '{', '[':
			nest++
			if d.depth+nest > maxDepth {
				d.off = i
				return nil, d.fail("exceeded max depth")
			}
			i++
		case '}', ']':
			nest--
			i++
			if nest == 0 {
				d.off = i
				return data[start:i:i], nil
			}
		case '"':
			i = stringEnd(data, i+1)
		default:
			i++
		}
	}
	d.off = len(data)
	return nil, d.fail("unexpected end of input")
}

// structural marks the bytes of x that Span stops at: a quote or a
// bracket. ORing 0x20 makes [ and ] into { and }, and no other byte. As
// with special, only the lowest mark is sure to be right.
func structural(x uint64) uint64 {
	y := x | 0x20*lsb
	return anyLess(x^('"'*lsb), 1) | anyLess(y^('{'*lsb), 1) | anyLess(y^('}'*lsb), 1)
}

// stringEnd returns the index after the quote that closes the string whose
// contents start at i, or len(data) if none does. It looks at eight bytes
// at a time for a quote or a backslash, as string does.
func stringEnd(data []byte, i int) int {
	for i < len(data) {
		for i+8 <= len(data) {
			x := binary.LittleEndian.Uint64(data[i:])
			if m := anyLess(x^('"'*lsb), 1) | anyLess(x^('\\'*lsb), 1); m != 0 {
				i += bits.TrailingZeros64(m) >> 3
				break
			}
			i += 8
		}
		for i < len(data) && data[i] != '"' && data[i] != '\\' {
			i++
		}
		if i >= len(data) {
			return i
		}
		if data[i] == '"' {
			return i + 1
		}
		i += 2 // a backslash and the byte it escapes
	}
	return len(data)
}

// Within returns err, if it is an *Error from decoding a value that was
// found at offset base of a document under the key elem, as if the whole
// document had been decoded: the offset counts from the document's start
// and the path starts with elem.
func Within(err error, base int, elem string) error {
	var e *Error
	if errors.As(err, &e) {
		e.Offset += base
		e.path = append(e.path, elem)
	}
	return err
}
