// Package hostcall is the SDK's side of lkedge's plugin ABI (docs/abi.md):
// the only code that knows the host's import and export names. In a wasm
// build it calls the host; natively it calls Native, which the test kit sets.
package hostcall

// ABI status codes returned by host functions (docs/abi.md).
const (
	OK         int32 = 0
	NoEvent    int32 = -1
	BadMemory  int32 = -2
	NotFound   int32 = -3
	Malformed  int32 = -4
	TooMany    int32 = -5
	TooLarge   int32 = -6
	NotAllowed int32 = -7
)

// Host is what a plugin can ask of lkedge.
type Host interface {
	// Event is the current event's JSON (docs/events.md).
	Event() []byte
	// Config returns the plugin's config value for key.
	Config(key string) (string, bool)
	// Emit hands the host one encoded action without its body, and the
	// body as raw bytes; it returns a status code.
	Emit(action, body []byte) int32
	// Log writes one log line; attrs are key\x00value\x00 pairs.
	Log(level int32, msg string, attrs []byte)
	// Fail sets the error message of the current call.
	Fail(msg string)
}

// Handler is the plugin's event handler, set by sdk.Handle.
var Handler func() error

// Dispatch runs the handler for one event and maps its outcome to the
// export's result: 0 done, 1 failed (message sent with Fail).
func Dispatch(h Host) int32 {
	if Handler == nil {
		h.Fail("plugin did not call sdk.Handle")
		return 1
	}
	if err := Handler(); err != nil {
		h.Fail(err.Error())
		return 1
	}
	return 0
}
