package jsonx

import (
	"math"
	"strconv"
)

// The readers below decode one value into *p with encoding/json's rules:
// null leaves a scalar unchanged and sets a pointer, slice or map to nil;
// any other value of the wrong type is an error.

func isNumberStart(c byte) bool { return c == '-' || ('0' <= c && c <= '9') }

// String reads a string.
func (d *Decoder) String(p *string) error {
	switch d.ws() {
	case '"':
		v, err := d.string()
		if err != nil {
			return err
		}
		*p = v
		return nil
	case 'n':
		if d.Null() {
			return nil
		}
	}
	return d.wrongType("string")
}

// Enum reads a protobuf enum the two ways protojson writes and reads
// one: its name, a string kept as it is, or its number. A number that
// names has a name for becomes that name, since protojson takes both forms
// as the same value; any other int32 is kept as its decimal text, so that
// it never equals a name. null leaves *p unchanged.
func (d *Decoder) Enum(p *string, names []string) error {
	if !isNumberStart(d.ws()) {
		if c := d.ws(); c != '"' && c != 'n' {
			return d.wrongType("enum")
		}
		return d.String(p)
	}
	var n int32
	if err := d.Int32(&n); err != nil {
		return err
	}
	if n >= 0 && int(n) < len(names) && names[n] != "" {
		*p = names[n]
	} else {
		*p = strconv.Itoa(int(n))
	}
	return nil
}

// Bool reads true or false.
func (d *Decoder) Bool(p *bool) error {
	switch d.ws() {
	case 't':
		if err := d.literal("true"); err != nil {
			return err
		}
		*p = true
		return nil
	case 'f':
		if err := d.literal("false"); err != nil {
			return err
		}
		*p = false
		return nil
	case 'n':
		if d.Null() {
			return nil
		}
	}
	return d.wrongType("bool")
}

// integer reads a number that must be an integer in [-min, max]; min is 0
// for unsigned types, which refuse even "-0" as encoding/json does.
func (d *Decoder) integer(typ string, min, max uint64) (neg bool, v uint64, null bool, err error) {
	c := d.ws()
	if !isNumberStart(c) {
		if c == 'n' && d.Null() {
			return false, 0, true, nil
		}
		return false, 0, false, d.wrongType(typ)
	}
	at := d.off
	lit, err := d.number()
	if err != nil {
		return false, 0, false, err
	}
	neg, v, ok := parseUint(lit)
	limit := max
	if neg {
		limit = min
	}
	if !ok || v > limit || (neg && min == 0) {
		return false, 0, false, &Error{Offset: at, Msg: "cannot decode number " + lit + " into " + typ}
	}
	return neg, v, false, nil
}

// parseUint parses an optional minus and decimal digits (nothing else: no
// fraction, no exponent), failing on overflow of uint64.
func parseUint(b string) (neg bool, v uint64, ok bool) {
	if len(b) > 0 && b[0] == '-' {
		neg, b = true, b[1:]
	}
	if len(b) == 0 {
		return false, 0, false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c < '0' || c > '9' {
			return false, 0, false
		}
		if v > (math.MaxUint64-9)/10 {
			return false, 0, false
		}
		v = v*10 + uint64(c-'0')
	}
	return neg, v, true
}

func signed(neg bool, v uint64) int64 {
	if neg {
		return -int64(v-1) - 1 // v may be 1<<63
	}
	return int64(v)
}

// Int64 reads a number into an int64.
func (d *Decoder) Int64(p *int64) error {
	neg, v, null, err := d.integer("int64", 1<<63, math.MaxInt64)
	if err == nil && !null {
		*p = signed(neg, v)
	}
	return err
}

// Int reads a number into an int (64 bits in wasm and on 64-bit hosts; the
// SDK only uses it where 32 would do).
func (d *Decoder) Int(p *int) error {
	neg, v, null, err := d.integer("int", uint64(math.MaxInt)+1, math.MaxInt)
	if err == nil && !null {
		*p = int(signed(neg, v))
	}
	return err
}

// Int32 reads a number into an int32.
func (d *Decoder) Int32(p *int32) error {
	neg, v, null, err := d.integer("int32", 1<<31, math.MaxInt32)
	if err == nil && !null {
		*p = int32(signed(neg, v))
	}
	return err
}

// Uint32 reads a number into a uint32.
func (d *Decoder) Uint32(p *uint32) error {
	_, v, null, err := d.integer("uint32", 0, math.MaxUint32)
	if err == nil && !null {
		*p = uint32(v)
	}
	return err
}

// Float64 reads a number into a float64.
func (d *Decoder) Float64(p *float64) error {
	c := d.ws()
	if !isNumberStart(c) {
		if c == 'n' && d.Null() {
			return nil
		}
		return d.wrongType("float64")
	}
	at := d.off
	lit, err := d.number()
	if err != nil {
		return err
	}
	v, err := strconv.ParseFloat(lit, 64)
	if err != nil {
		return &Error{Offset: at, Msg: "cannot decode number " + string(lit) + " into float64"}
	}
	*p = v
	return nil
}

// QuotedInt64 reads an int64 written as a JSON string of decimal digits,
// as protojson writes 64-bit integers, or as a plain number.
func (d *Decoder) QuotedInt64(p *int64) error {
	if d.ws() != '"' {
		return d.Int64(p)
	}
	at := d.off
	s, err := d.string()
	if err != nil {
		return err
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return &Error{Offset: at, Msg: "cannot decode string " + strconv.Quote(s) + " into int64"}
	}
	*p = v
	return nil
}

// RawValue reads any value into *p as its bytes (json.RawMessage's rule:
// null is kept as the bytes null).
func (d *Decoder) RawValue(p *[]byte) error {
	b, err := d.Raw()
	if err == nil {
		*p = b
	}
	return err
}

// StringMap reads an object of strings.
func (d *Decoder) StringMap(p *map[string]string) error {
	if d.Null() {
		*p = nil
		return nil
	}
	if d.ws() != '{' {
		return d.wrongType("object")
	}
	if *p == nil {
		*p = map[string]string{}
	}
	m := *p
	return d.Object(nil, func(key string) error {
		var v string
		if err := d.String(&v); err != nil {
			return err
		}
		m[key] = v
		return nil
	})
}

// Strings reads an array of strings.
func (d *Decoder) Strings(p *[]string) error { return Slice(d, p, (*Decoder).String) }

// Slice reads an array into *p as encoding/json does, which matters only
// when a key repeats: elements decode into those already there, and the
// slice keeps its capacity.
func Slice[T any](d *Decoder, p *[]T, elem func(*Decoder, *T) error) error {
	if d.Null() {
		*p = nil
		return nil
	}
	if d.ws() != '[' {
		return d.wrongType("array")
	}
	s := *p
	n := 0
	err := d.Array(func(i int) error {
		if i >= len(s) {
			if i < cap(s) {
				s = s[:i+1]
			} else {
				var zero T
				s = append(s, zero)
			}
		}
		n = i + 1
		return elem(d, &s[i])
	})
	if err != nil {
		return err
	}
	if n == 0 {
		s = make([]T, 0)
	}
	*p = s[:n]
	return nil
}

// Ptr reads a value into *p, allocating it first if needed; null sets it
// to nil.
func Ptr[T any](d *Decoder, p **T, dec func(*Decoder, *T) error) error {
	if d.Null() {
		*p = nil
		return nil
	}
	if *p == nil {
		*p = new(T)
	}
	return dec(d, *p)
}
