//go:build !wasip1

package hostcall

// Native is the host when the plugin runs as ordinary Go code: the test kit
// sets it for each call.
var Native Host

// Current is the host of the call in progress; outside a call it is one
// that has no event, so the SDK answers with errors instead of panicking.
func Current() Host {
	if Native == nil {
		return none{}
	}
	return Native
}

type none struct{}

func (none) Event() []byte                             { return nil }
func (none) Config(string) (string, bool)              { return "", false }
func (none) Emit(_, _ []byte) int32                    { return NoEvent }
func (none) Log(level int32, msg string, attrs []byte) {}
func (none) Fail(string)                               {}

// Emit is Current().Emit; in a plugin it spares the interface call.
func Emit(action, body []byte) int32 { return Current().Emit(action, body) }
