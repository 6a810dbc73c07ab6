package sdk

import "strconv"

// The SDK does not import fmt. fmt formats by reflection and pulls reflect,
// os and their kin into every module built with the SDK, and each host
// compiles and keeps a module's whole code: a plugin that does not use fmt
// itself should not pay for it (docs/plugins.md, "Small modules").

// wrapped is an error with more words than the error it wraps, as
// fmt.Errorf's %w makes it.
type wrapped struct {
	msg string
	err error
}

// wrap is fmt.Errorf("prefix: %w", err).
func wrap(prefix string, err error) error { return &wrapped{prefix + ": " + err.Error(), err} }

// detail is fmt.Errorf("%w: detail", err).
func detail(err error, detail string) error { return &wrapped{err.Error() + ": " + detail, err} }

func (w *wrapped) Error() string { return w.msg }

func (w *wrapped) Unwrap() error { return w.err }

// unsupported is what Log writes for a value it cannot format without
// reflection.
const unsupported = "!UNSUPPORTED"

// appendMethod appends what m returns. A method that panics (a nil
// pointer's, often) is written as !PANIC instead of failing the call, as
// fmt would not fail it either.
func appendMethod(b []byte, m func() string) (out []byte) {
	defer func() {
		if recover() != nil {
			out = append(b, "!PANIC"...)
		}
	}()
	return append(b, m()...)
}

// appendValue appends v as fmt's %v writes it, for the values Log
// formats: nil, strings, booleans, integers, floats, errors and types
// with a String method. Any other value is written as unsupported.
func appendValue(b []byte, v any) []byte {
	switch v := v.(type) {
	case nil:
		return append(b, "<nil>"...)
	case string:
		return append(b, v...)
	case error:
		return appendMethod(b, v.Error)
	case interface{ String() string }:
		return appendMethod(b, v.String)
	case bool:
		return strconv.AppendBool(b, v)
	case int:
		return strconv.AppendInt(b, int64(v), 10)
	case int8:
		return strconv.AppendInt(b, int64(v), 10)
	case int16:
		return strconv.AppendInt(b, int64(v), 10)
	case int32:
		return strconv.AppendInt(b, int64(v), 10)
	case int64:
		return strconv.AppendInt(b, v, 10)
	case uint:
		return strconv.AppendUint(b, uint64(v), 10)
	case uint8:
		return strconv.AppendUint(b, uint64(v), 10)
	case uint16:
		return strconv.AppendUint(b, uint64(v), 10)
	case uint32:
		return strconv.AppendUint(b, uint64(v), 10)
	case uint64:
		return strconv.AppendUint(b, v, 10)
	case uintptr:
		return strconv.AppendUint(b, uint64(v), 10)
	case float32:
		return strconv.AppendFloat(b, float64(v), 'g', -1, 32)
	case float64:
		return strconv.AppendFloat(b, v, 'g', -1, 64)
	}
	return append(b, unsupported...)
}
