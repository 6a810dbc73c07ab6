// Package plugintests holds the built-in plugins' table tests to one set of
// golden files twice: natively through sdktest, and compiled to wasm
// through the real host. A plugin whose two runs differ, or that drifts
// from its golden files, fails.
package plugintests

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"

	"github.com/lkedge/lkedge/host/deliver"
	"github.com/lkedge/lkedge/host/plugin"
	"github.com/lkedge/lkedge/host/plugin/plugintest"
	"github.com/lkedge/lkedge/plugins/runner"
	"github.com/lkedge/lkedge/sdk"
	"github.com/lkedge/lkedge/sdk/sdktest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// cache spares compiling the same module for every case.
var cache = wazero.NewCompilationCache()

// Case is one event given to a plugin with a config.
type Case struct {
	// Name names the golden file, testdata/<Name>.golden.json.
	Name string
	// Event is a file in plugins/testdata/events.
	Event  string
	Config map[string]string
}

// Event reads one of the shared input events.
func Event(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "events", name))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// Native runs each case through sdktest (natively, or against the .wasm
// that LKEDGE_PLUGIN_WASM names) and compares it with its golden file.
// The handler is one for sdk.HandleLazy, as the built-in plugins' are.
func Native(t *testing.T, handler func(*sdk.LazyEvent) error, cases []Case) {
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			res, err := sdktest.RunLazy(handler, sdktest.Event(Event(t, tc.Event)), sdktest.Config(tc.Config))
			out := sdktest.Output{}
			if res != nil {
				out.Result = *res
			}
			if err != nil {
				out.Error = err.Error()
			}
			Golden(t, tc.Name, out)
		})
	}
}

// Host builds the plugin in dir, runs each case through host/plugin and
// compares it with the same golden file as Native.
func Host(t *testing.T, dir string, cases []Case) {
	wasm := plugintest.Build(t, dir)
	ctx := context.Background()
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			p, err := plugin.Load(ctx, wasm, plugin.Options{Name: filepath.Base(dir), Config: tc.Config, Cache: cache})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close(ctx)
			out, _ := runner.Call(ctx, p, Event(t, tc.Event))
			out.Kind = "" // native runs know no kinds
			compare(t, tc.Name, out)
		})
	}
}

// HostRequest runs one event through the compiled plugin in dir and
// returns the one request it must make.
func HostRequest(tb testing.TB, dir, event string, config map[string]string) sdktest.Request {
	tb.Helper()
	ctx := context.Background()
	p, err := plugin.Load(ctx, plugintest.Build(tb, dir), plugin.Options{Name: filepath.Base(dir), Config: config, Cache: cache})
	if err != nil {
		tb.Fatal(err)
	}
	defer p.Close(ctx)
	out, _ := runner.Call(ctx, p, Event(tb, event))
	if out.Error != "" || len(out.Requests) != 1 {
		tb.Fatalf("call = %+v", out)
	}
	return out.Requests[0]
}

// Golden compares out with testdata/<name>.golden.json, or rewrites it
// with -update: the native run is the one that writes, the host run only
// ever compares.
func Golden(tb testing.TB, name string, out sdktest.Output) {
	tb.Helper()
	if *update {
		if err := os.WriteFile(goldenPath(name), render(tb, out), 0o644); err != nil {
			tb.Fatal(err)
		}
		return
	}
	compare(tb, name, out)
}

func goldenPath(name string) string { return filepath.Join("testdata", name+".golden.json") }

func render(tb testing.TB, out sdktest.Output) []byte {
	tb.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // bodies read as they are sent
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		tb.Fatal(err)
	}
	return b.Bytes()
}

func compare(tb testing.TB, name string, out sdktest.Output) {
	tb.Helper()
	got, path := render(tb, out), goldenPath(name)
	want, err := os.ReadFile(path)
	if err != nil {
		tb.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		tb.Errorf("%s differs:\n got %s\nwant %s", path, got, want)
	}
}

// Deliver sends r to url (in place of its own) as the host's deliverer
// does: its headers in order, the Idempotency-Key, and the signature that
// host/deliver computes with secret at now.
func Deliver(tb testing.TB, r sdktest.Request, url string, secret []byte, now time.Time) *http.Response {
	tb.Helper()
	req, err := http.NewRequest(r.Method, url, bytes.NewReader(r.Body))
	if err != nil {
		tb.Fatal(err)
	}
	for _, h := range r.Headers {
		req.Header.Add(h[0], h[1])
	}
	if r.IdempotencyKey != "" {
		req.Header.Set("Idempotency-Key", r.IdempotencyKey)
	}
	if s := r.Sign; s != nil {
		d := &deliver.Delivery{ID: "test/1", Body: r.Body, IdempotencyKey: r.IdempotencyKey, CreatedAt: now,
			Sign: &deliver.Sign{Scheme: s.Scheme, Secret: s.Secret, Header: s.Header, TimestampHeader: s.TimestampHeader, Template: s.Template, Timestamp: s.Timestamp}}
		if err := deliver.SignRequest(req.Header, d, secret, now); err != nil {
			tb.Fatal(err)
		}
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { res.Body.Close() })
	return res
}
