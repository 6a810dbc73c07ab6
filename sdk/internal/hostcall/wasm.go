//go:build wasip1

package hostcall

import (
	"runtime/debug"
	"unsafe"
)

// The host copies what it reads of the guest's memory before it returns
// and keeps no pointer into it, so the imports are noescape: a buffer
// passed to them can stay on the stack (Config's does), where in wasm an
// allocation costs more than the host call.

//go:noescape
//go:wasmimport lkedge event_read
func eventRead(buf unsafe.Pointer, size uint32) int32

//go:noescape
//go:wasmimport lkedge config_get
func configGet(key unsafe.Pointer, keyLen uint32, buf unsafe.Pointer, size uint32) int32

//go:noescape
//go:wasmimport lkedge action_emit_body
func actionEmitBody(p unsafe.Pointer, size uint32, body unsafe.Pointer, bodySize uint32) int32

//go:noescape
//go:wasmimport lkedge log
func logLine(level int32, msg unsafe.Pointer, msgLen uint32, attrs unsafe.Pointer, attrsLen uint32) int32

//go:noescape
//go:wasmimport lkedge fail
func fail(msg unsafe.Pointer, size uint32) int32

// lkedgeABIv1 marks the ABI version this SDK speaks; the host checks for it
// before it runs anything.
//
//go:wasmexport lkedge_abi_v1
func lkedgeABIv1() {}

//go:wasmexport lkedge_on_event
func onEvent(size uint32) int32 {
	current.size = size
	return Dispatch(current)
}

// current is a pointer so that making it a Host costs nothing: a wasmHost
// value would be copied to the heap each time, an allocation for every
// Config, Send and Log.
var current = &wasmHost{}

// Current is the host of the call in progress.
func Current() Host { return current }

type wasmHost struct{ size uint32 }

func ptr(b []byte) unsafe.Pointer {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Pointer(&b[0])
}

func strptr(s string) unsafe.Pointer { return unsafe.Pointer(unsafe.StringData(s)) }

func (h *wasmHost) Event() []byte {
	buf := make([]byte, h.size)
	n := eventRead(ptr(buf), h.size)
	if n < 0 || uint32(n) > h.size {
		return nil
	}
	return buf[:n]
}

func (*wasmHost) Config(key string) (string, bool) {
	buf := make([]byte, 256)
	for {
		n := configGet(strptr(key), uint32(len(key)), ptr(buf), uint32(len(buf)))
		if n < 0 {
			return "", false
		}
		if int(n) <= len(buf) {
			return string(buf[:n]), true
		}
		buf = make([]byte, n)
	}
}

func (*wasmHost) Emit(action, body []byte) int32 { return Emit(action, body) }

// Emit is Current().Emit without the interface call, through which
// the action and body would escape: here they do not, so the caller's
// buffer can be on the stack.
func Emit(action, body []byte) int32 {
	return actionEmitBody(ptr(action), uint32(len(action)), ptr(body), uint32(len(body)))
}

func (*wasmHost) Log(level int32, msg string, attrs []byte) {
	logLine(level, strptr(msg), uint32(len(msg)), ptr(attrs), uint32(len(attrs)))
}

func (*wasmHost) Fail(msg string) { fail(strptr(msg), uint32(len(msg))) }

// gcPercent is the guest's GOGC (the host passes no environment). Go's
// default, 100, lets the heap grow to 4 MiB of garbage before the first
// collection, and a plugin's live heap is far smaller: at 25 the goal is
// 1 MiB, which takes about 3 MiB off every warm instance's linear memory
// (BenchmarkInstanceMemory), at no CPU cost BenchmarkModules could see:
// collecting a heap this small is cheap. A plugin that
// keeps a large heap sets its own with debug.SetGCPercent in its init,
// which runs after this one.
const gcPercent = 25

func init() { debug.SetGCPercent(gcPercent) }
