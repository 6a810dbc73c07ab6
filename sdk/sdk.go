// Package sdk is how a Go plugin for lkedge is written: one function that
// receives an event and asks the host for HTTP requests.
//
//	func init() { sdk.Handle(notify) }
//
//	func notify(ev *sdk.Event) error {
//		if ev.Type != sdk.TypeEgressEnded {
//			return nil
//		}
//		url, err := sdk.Config("url")
//		if err != nil {
//			return err
//		}
//		return sdk.POST(url).JSON(ev.Egress).Send()
//	}
//
//	func main() {}
//
// Build it with GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared.
// The host sends the requests, signs them, retries them and keeps them
// across restarts; the plugin never sees a secret or a socket. Test it with
// package sdktest, natively or through the real host (docs/plugins.md).
//
// The SDK uses only the standard library, and no reflection on the paths
// every event takes: decoding the event and encoding the requests.
package sdk

import (
	"errors"
	"strconv"

	"github.com/lkedge/lkedge/sdk/internal/hostcall"
)

// ABIVersion is the version of lkedge's plugin ABI this SDK speaks.
const ABIVersion = 1

// Handle registers the plugin's handler. Call it from init: the host may
// send the first event as soon as the module is initialized. An error the
// handler returns fails the event, and the host logs it and counts it.
func Handle(fn func(ev *Event) error) {
	hostcall.Handler = func() error {
		ev, err := ParseEvent(hostcall.Current().Event())
		if err != nil {
			return err
		}
		return fn(ev)
	}
}

// ErrNoConfig is returned by Config for a key the operator did not set.
var ErrNoConfig = errors.New("config key not set")

// Config returns the value the operator set for key in plugins.yaml.
func Config(key string) (string, error) {
	v, ok := hostcall.Current().Config(key)
	if !ok {
		return "", detail(ErrNoConfig, strconv.Quote(key))
	}
	return v, nil
}

// ConfigOr returns the value for key, or def when the operator did not set
// it: for optional settings, where a missing key is not an error.
func ConfigOr(key, def string) string {
	if v, ok := hostcall.Current().Config(key); ok {
		return v
	}
	return def
}

// Log levels, the same numbers as log/slog's.
const (
	LevelDebug int32 = -4
	LevelInfo  int32 = 0
	LevelWarn  int32 = 4
	LevelError int32 = 8
)

// Log writes a structured line to the host's log, with the plugin's name
// and the event id added by the host. args are alternating keys and values.
// Keys and values are written as fmt's %v writes them when they are
// strings, booleans, numbers, errors, nil or types with a String method
// (time.Duration, time.Time); any other value is written as !UNSUPPORTED,
// since formatting it would take fmt's reflection into every plugin: pass
// fmt.Sprint(v) for such a value.
func Log(level int32, msg string, args ...any) {
	var attrs []byte
	for i := 0; i+1 < len(args); i += 2 {
		attrs = append(appendValue(attrs, args[i]), 0)
		attrs = append(appendValue(attrs, args[i+1]), 0)
	}
	if len(args)%2 == 1 {
		attrs = append(attrs, "!BADKEY\x00"...)
		attrs = append(appendValue(attrs, args[len(args)-1]), 0)
	}
	hostcall.Current().Log(level, msg, attrs)
}

// Info logs at info level: what the plugin did.
func Info(msg string, args ...any) { Log(LevelInfo, msg, args...) }

// Warn logs at warn level: what an operator should look at.
func Warn(msg string, args ...any) { Log(LevelWarn, msg, args...) }
