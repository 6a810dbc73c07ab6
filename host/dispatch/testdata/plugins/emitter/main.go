// Command emitter is the dispatch tests' plugin: it asks for one request to
// its config "url", shaped by its config "mode" (a request the outbox must
// refuse, in the raw ABI where the SDK would not let it be built), after
// sleeping "sleep_ms" milliseconds and then keeping the CPU busy for "spin"
// rounds of arithmetic, with the event id as its body (mode "event": the
// event's JSON as the plugin got it). It fails the event whose id is its
// config "fail_id".
package main

import (
	"fmt"
	"strconv"
	"time"
	"unsafe"

	"github.com/lkedge/lkedge/sdk"
)

//go:wasmimport lkedge action_emit
func actionEmit(p unsafe.Pointer, size uint32) int32

func init() { sdk.Handle(handle) }

func handle(ev *sdk.Event) error {
	if ms, err := strconv.Atoi(sdk.ConfigOr("sleep_ms", "0")); err == nil && ms > 0 {
		time.Sleep(time.Duration(ms) * time.Millisecond)
	}
	if n, err := strconv.Atoi(sdk.ConfigOr("spin", "0")); err == nil && n > 0 {
		spin(n)
	}
	if id := sdk.ConfigOr("fail_id", ""); id != "" && id == ev.ID {
		return fmt.Errorf("told to fail %s", id)
	}
	url := sdk.ConfigOr("url", "http://127.0.0.1:9/hook")
	var raw string
	switch mode := sdk.ConfigOr("mode", ""); mode {
	case "":
		return sdk.POST(url).Header("Content-Type", "text/plain").Body([]byte(ev.ID)).Send()
	case "event":
		return sdk.POST(url).Header("Content-Type", "application/json").Body(ev.Raw).Send()
	case "header-crlf":
		raw = `"headers":[["X-Note","a\r\nX-Injected: 1"]]`
	case "header-control":
		raw = `"headers":[["X-Note","a\u0001b"]]`
	case "header-del":
		raw = `"headers":[["X-Note","a\u007fb"]]`
	case "idempotency-control":
		raw = `"idempotencyKey":"key\u000bx"`
	case "idempotency-crlf":
		raw = `"idempotencyKey":"key\r\nX-Injected: 1"`
	case "sign-header":
		raw = `"sign":{"scheme":"hmac-sha256-hex","secret":"key","header":"X Sig"}`
	case "sign-timestamp-header":
		raw = `"sign":{"scheme":"hmac-sha256-hex","secret":"key","timestampHeader":"X-TS\n"}`
	case "sign-timestamp":
		raw = `"sign":{"scheme":"hmac-sha256-hex","secret":"key","timestamp":"soon"}`
	case "sign-overrides":
		raw = `"sign":{"scheme":"standard-webhooks","secret":"key","header":"X-Sig"}`
	default:
		return fmt.Errorf("unknown mode %q", mode)
	}
	a := []byte(`{"type":"http","url":"` + url + `",` + raw + `}`)
	if st := actionEmit(unsafe.Pointer(&a[0]), uint32(len(a))); st != 0 {
		return fmt.Errorf("action_emit: status %d", st)
	}
	return nil
}

// sink keeps spin's result alive, so the compiler keeps the loop.
var sink uint64

// spin does n rounds of arithmetic: CPU work of a fixed size, however long
// the host makes the call wait in between.
func spin(n int) {
	x := uint64(1)
	for i := range n {
		x = x*6364136223846793005 + uint64(i)
	}
	sink = x
}

func main() {}
