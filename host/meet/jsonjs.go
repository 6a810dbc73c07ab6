package meet

import (
	"bytes"
	"encoding/json"
)

// marshalJS encodes v as JavaScript's JSON.stringify would: compact,
// without Go's HTML escaping of <, > and &, and with U+2028 and U+2029 as
// they are, so published bytes (stored metadata, data messages, the
// recording OpenVidu Meet's webhooks carry and sign) match the reference's.
func marshalJS(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return unescapeLineSeparators(bytes.TrimSuffix(b.Bytes(), []byte("\n"))), nil
}

// unescapeLineSeparators turns the \u2028 and \u2029 escapes that
// encoding/json always writes back into the characters. In encoding/json's
// output every backslash starts an escape, so skipping each escape's second
// byte keeps an escaped backslash followed by "u2028" as it is.
func unescapeLineSeparators(b []byte) []byte {
	if !bytes.Contains(b, []byte(`\u202`)) {
		return b
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' || i+1 == len(b) {
			out = append(out, b[i])
			continue
		}
		if rest := b[i:]; bytes.HasPrefix(rest, []byte(`\u2028`)) || bytes.HasPrefix(rest, []byte(`\u2029`)) {
			out = append(out, 0xe2, 0x80, 0xa8+rest[5]-'8') // U+2028 or U+2029 in UTF-8
			i += 5
			continue
		}
		out = append(out, b[i], b[i+1])
		i++
	}
	return out
}
