package jsonx

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

var validCases = []string{
	``, ` `, `1`, `-0`, `01`, `1.`, `1e5`, `"a"`, `"\u12"`, `"\ud800"`, "\"\x01\"", "\"\xff\"", `[1,]`, `[1 2]`, `{"a":1}`, `{"a" 1}`,
	`{"a":1,}`, `{1:1}`, `[[[]]]`, `[[[]]`, `nul`, `null`, `true `, `truex`, `{"a":[{"b":null}]}`, "[\"\\u00e9\", 1e-3, -1.5E+2]",
	strings.Repeat("[", 10000) + strings.Repeat("]", 10000), strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
}

func TestValid(t *testing.T) {
	for _, in := range validCases {
		if got, want := Valid([]byte(in)), json.Valid([]byte(in)); got != want {
			t.Errorf("Valid(%.40q) = %v, json.Valid says %v", in, got, want)
		}
	}
}

func FuzzValid(f *testing.F) {
	for _, in := range validCases {
		f.Add([]byte(in))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := Valid(b), json.Valid(b); got != want {
			t.Fatalf("Valid(%q) = %v, json.Valid says %v", b, got, want)
		}
	})
}

var stringCases = []string{
	"", "plain", `quote " backslash \ slash /`, "ctl \x00\x01\x1f\x7f tab\t nl\n cr\r bs\b ff\f", "é€😀", "bad \xff \xc3 \xed\xa0\x80 end",
	"line sep \u2028 para sep \u2029", "<html>&amp;", strings.Repeat("long ", 50),
}

// TestAppendString checks the encoding against encoding/json's.
func TestAppendString(t *testing.T) {
	for _, s := range stringCases {
		checkAppendString(t, s)
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range stringCases {
		f.Add(s)
	}
	f.Fuzz(checkAppendString)
}

func checkAppendString(t *testing.T, s string) {
	out := AppendString([]byte("prefix:"), s)
	if !strings.HasPrefix(string(out), "prefix:") {
		t.Fatalf("AppendString dropped the prefix: %q", out)
	}
	out = out[len("prefix:"):]
	// encoding/json with HTML escaping off is the oracle, byte for byte:
	// plugins moved from it to AppendString must send what they sent.
	var ref bytes.Buffer
	enc := json.NewEncoder(&ref)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		t.Fatal(err)
	}
	if want := bytes.TrimSuffix(ref.Bytes(), []byte("\n")); !bytes.Equal(out, want) {
		t.Fatalf("AppendString(%q) = %s, want %s (encoding/json)", s, out, want)
	}
	if strings.ContainsAny(string(out), "\u2028\u2029") {
		t.Fatalf("AppendString(%q) = %q keeps a line separator", s, out)
	}
}

func TestErrorPath(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{`{"a":[1,{"b":"x"}]}`, `json: a[0]: cannot decode number into object at offset 6`},
		{`{"a":[{"b":"x"}]}`, `json: a[0].b: cannot decode string into int64 at offset 11`},
		// An empty key is a key: the path shows it, and writing it must not
		// fail.
		{`{"":[{"":"x"}]}`, `json: [0].: cannot decode string into int64 at offset 9`},
	} {
		d := NewDecoder([]byte(tc.doc))
		err := d.Object(nil, func(key string) error {
			return Slice(d, new([]struct{}), func(d *Decoder, _ *struct{}) error {
				return d.Object(nil, func(string) error {
					var n int64
					return d.Int64(&n)
				})
			})
		})
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s: error = %v, want %s", tc.doc, err, tc.want)
		}
	}
}

func TestEnum(t *testing.T) {
	names := []string{"ZERO", "ONE", "", "THREE"}
	for _, tc := range []struct {
		in, want, err string
	}{
		{`"ONE"`, "ONE", ""},
		{`"NOT_IN_THE_TABLE"`, "NOT_IN_THE_TABLE", ""},
		{`""`, "", ""},
		{`0`, "ZERO", ""},
		{`-0`, "ZERO", ""},
		{`3`, "THREE", ""},
		{`2`, "2", ""},
		{`4`, "4", ""},
		{`99`, "99", ""},
		{`-7`, "-7", ""},
		{`2147483647`, "2147483647", ""},
		{`-2147483648`, "-2147483648", ""},
		{`null`, "before", ""},
		{`2147483648`, "", "json: cannot decode number 2147483648 into int32 at offset 0"},
		{`1.0`, "", "json: cannot decode number 1.0 into int32 at offset 0"},
		{`1e2`, "", "json: cannot decode number 1e2 into int32 at offset 0"},
		{`true`, "", "json: cannot decode bool into enum at offset 0"},
		{`["ONE"]`, "", "json: cannot decode array into enum at offset 0"},
		{`{}`, "", "json: cannot decode object into enum at offset 0"},
		{`"ONE`, "", "json: unexpected end of input in string literal at offset 4"},
	} {
		got := "before"
		d := NewDecoder([]byte(tc.in))
		err := d.Enum(&got, names)
		if err == nil {
			err = d.End()
		}
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("Enum(%s) error %v, want %s", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Enum(%s) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// spanCases add to validCases what Span must get right: brackets and
// escapes inside strings, long strings around the eight-byte steps, and
// values followed by more.
var spanCases = []string{
	`{"a":"}"}`, `["]"]`, `{"a":"\"}"}`, `{"a":"\\"}`, `["\\\"]"]`, `{"a":"` + strings.Repeat(`x\"`, 9) + `}"} ,1`,
	`[{"a":[1,{"b":"[["}]},2] x`, `{"a":"12345678"}`, `{"a":"1234567\\"}`, "{\n  \"a\" : [ 1 ,\t2 ]\n}  ",
	`{`, `[}`, `{"a":"x}`, `{"a":"\`, `{]`, `"str" 1`, `-1.5e3]`, `tru`,
}

// TestSpan checks Span against Raw: on one well-formed value they return
// the same bytes and leave the decoder at the same place; on anything else
// Span must only stay within the input.
func TestSpan(t *testing.T) {
	for _, in := range append(validCases, spanCases...) {
		checkSpan(t, []byte(in))
	}
}

func FuzzSpan(f *testing.F) {
	for _, in := range append(validCases, spanCases...) {
		f.Add([]byte(in))
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkSpan(t, b) })
}

func checkSpan(t *testing.T, b []byte) {
	t.Helper()
	sd, rd := NewDecoder(b), NewDecoder(b)
	span, spanErr := sd.Span()
	raw, rawErr := rd.Raw()
	if sd.Offset() > len(b) || len(span) > len(b) {
		t.Fatalf("Span(%.60q) went past the input", b)
	}
	if rawErr != nil {
		return // malformed: Span may end anywhere, or fail
	}
	if spanErr != nil || string(span) != string(raw) || sd.Offset() != rd.Offset() {
		t.Fatalf("Span(%.60q) = %.60q at %d, %v; Raw = %.60q at %d", b, span, sd.Offset(), spanErr, raw, rd.Offset())
	}
}
