package meet

import (
	"bytes"
	"encoding/json"
)

// marshalJS encodes v as JavaScript's JSON.stringify would: compact and
// without Go's HTML escaping of <, > and &, so published bytes match the
// reference's. (Go still escapes U+2028 and U+2029, which JSON.stringify
// leaves raw; both parse to the same string.)
func marshalJS(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}
