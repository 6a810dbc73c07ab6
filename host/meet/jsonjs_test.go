package meet

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestMarshalJSLikeJSONStringify: marshalJS writes what Node's
// JSON.stringify writes (each want was checked against Node 20), above all
// U+2028 and U+2029 as they are, which encoding/json always escapes: a
// recording's text reaches OpenVidu Meet's webhooks, signed, byte for byte.
func TestMarshalJSLikeJSONStringify(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"line\u2028sep\u2029para", `{"details":"line` + "\u2028" + `sep` + "\u2029" + `para"}`},
		{`a\u2028`, `{"details":"a\\u2028"}`},
		{"\\\u2028", `{"details":"\\` + "\u2028" + `"}`},
		{`\\u2029x`, `{"details":"\\\\u2029x"}`},
		{"\b\f\n\r\t\x01\x1f\x7f", `{"details":"\b\f\n\r\t\u0001\u001f` + "\x7f" + `"}`},
		{`<&> "q" é 😀`, `{"details":"<&> \"q\" é 😀"}`},
	} {
		got, err := marshalJS(map[string]string{"details": tc.in})
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != tc.want {
			t.Errorf("marshalJS(%q)\n got %s\nwant %s", tc.in, got, tc.want)
		}
	}
}

// FuzzMarshalJS: whatever the text, marshalJS's output reads back as that
// text, and every U+2028 and U+2029 in it is written as it is.
func FuzzMarshalJS(f *testing.F) {
	for _, s := range []string{"line\u2028sep\u2029para", `a\u2028`, "\\\u2028", `\\u2029x`, "\\\\\u2029", "<&>\x00\x7f", "\xff\u2028"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := marshalJS(s)
		if err != nil {
			t.Fatal(err)
		}
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("marshalJS(%q) = %q, not JSON: %v", s, got, err)
		}
		if want := strings.ToValidUTF8(s, "\ufffd"); back != want {
			t.Fatalf("marshalJS(%q) = %q reads back as %q", s, got, back)
		}
		for _, sep := range []string{"\u2028", "\u2029"} {
			if n, m := strings.Count(string(got), sep), strings.Count(back, sep); n != m {
				t.Fatalf("marshalJS(%q) = %q has %d raw %q, the text %d", s, got, n, sep, m)
			}
		}
	})
}
