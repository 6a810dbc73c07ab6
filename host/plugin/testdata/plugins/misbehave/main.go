// Command misbehave is a plugin that does, on purpose, what a buggy or
// hostile plugin might; its config key "mode" picks the misbehaviour. It
// speaks the raw ABI where the SDK would not let it misbehave.
package main

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/lkedge/lkedge/sdk"
)

//go:wasmimport lkedge action_emit
func actionEmit(p unsafe.Pointer, size uint32) int32

//go:wasmimport lkedge action_emit_body
func actionEmitBody(p unsafe.Pointer, size uint32, body unsafe.Pointer, bodySize uint32) int32

func emitRaw(b []byte) int32 { return actionEmit(unsafe.Pointer(&b[0]), uint32(len(b))) }

// legacyAction is the action the default mode sends, as a plugin built
// before action_emit_body encoded it: the body inside the JSON.
const legacyAction = `{"type":"http","method":"POST","url":"https://example.com/hook","headers":[["Content-Type","text/plain"]],"body":"EV_`

func init() { sdk.Handle(handle) }

var sink [][]byte

func handle(ev *sdk.Event) error {
	switch mode := sdk.ConfigOr("mode", ""); mode {
	case "loop":
		for i := 0; ; i++ {
			if i < 0 {
				return nil
			}
		}
	case "sleep":
		time.Sleep(time.Hour)
	case "deadlock":
		var mu sync.Mutex
		mu.Lock()
		mu.Lock()
	case "membomb":
		for {
			sink = append(sink, make([]byte, 1<<20))
		}
	case "panic":
		panic("boom from plugin")
	case "exit":
		os.Exit(3)
	case "huge":
		return sdk.POST("https://example.com/hook").Body([]byte(strings.Repeat("x", 2<<20))).Send()
	case "malformed":
		if st := emitRaw([]byte(`{"type":"http","url":`)); st != 0 {
			return nil // ignores the refusal: the host must still fail the call
		}
	case "legacy":
		if st := emitRaw([]byte(legacyAction + strings.TrimPrefix(ev.ID, "EV_") + `"}`)); st != 0 {
			return fmt.Errorf("action_emit: status %d", st)
		}
	case "bodytwice":
		a := []byte(`{"type":"http","url":"https://example.com/hook","body":"x"}`)
		if st := actionEmitBody(unsafe.Pointer(&a[0]), uint32(len(a)), unsafe.Pointer(&a[0]), 1); st != 0 {
			return nil // ignores the refusal: the host must still fail the call
		}
	case "badbody":
		a := []byte(`{"type":"http","url":"https://example.com/hook"}`)
		if st := actionEmitBody(unsafe.Pointer(&a[0]), uint32(len(a)), unsafe.Pointer(uintptr(0xFFFFFF00)), 1000); st != 0 {
			return fmt.Errorf("action_emit_body: status %d", st)
		}
	case "flood":
		for i := 0; i < 10000; i++ {
			if err := sdk.POST("https://example.com/hook").Send(); err != nil {
				return err
			}
		}
	case "stderr":
		for i := 0; i < 100000; i++ {
			os.Stderr.WriteString("noise noise noise noise noise noise noise noise\n")
		}
		return sdk.POST("https://example.com/hook").Send()
	case "logflood":
		for i := 0; i < 10000; i++ {
			sdk.Info("chatty", "i", i)
		}
		return sdk.POST("https://example.com/hook").Send()
	case "outside":
		return sdk.POST("https://evil.example.net/hook").Send()
	case "loopback":
		return sdk.POST("http://127.0.0.1:1/admin").Send()
	case "metadata":
		return sdk.POST("http://169.254.169.254/latest/meta-data/").Send()
	default:
		return sdk.POST("https://example.com/hook").Header("Content-Type", "text/plain").Body([]byte(ev.ID)).Send()
	}
	return nil
}

func main() {}
