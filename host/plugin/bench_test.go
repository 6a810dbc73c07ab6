package plugin

import (
	"context"
	"os"
	"testing"

	"github.com/lkedge/lkedge/host/plugin/plugintest"
)

// BenchmarkCall compares one pooled call of a typical plugin on a 1 KB
// event with no time limit, with lkedge's interrupt check, and with
// wazero's WithCloseOnContextDone.
func BenchmarkCall(b *testing.B) {
	wasm := plugintest.Build(b, "testdata/plugins/typical")
	event, err := os.ReadFile("../../testdata/events/egress_updated.event.json")
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		stop stopMode
	}{
		{"unlimited", stopNone},
		{"interrupt", stopInterrupt},
		{"closeOnContextDone", stopContextDone},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ctx := context.Background()
			testStopMode = bc.stop
			p, err := Load(ctx, wasm, Options{Name: "typical", Config: map[string]string{"url": "https://example.com/hook"}})
			testStopMode = stopInterrupt
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close(ctx)
			b.SetBytes(int64(len(event)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.Call(ctx, event, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPlugins is one pooled call, with lkedge's time limit, of
// plugins doing more and more on the same 1 KB event: noop only has the
// SDK read and decode it, typical asks for one small signed JSON webhook,
// standard-webhooks forwards the whole event.
func BenchmarkPlugins(b *testing.B) {
	event, err := os.ReadFile("../../testdata/events/egress_updated.event.json")
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct{ name, dir string }{
		{"noop", "testdata/plugins/noop"},
		{"typical", "testdata/plugins/typical"},
		{"standard-webhooks", "../../plugins/standard-webhooks"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ctx := context.Background()
			p, err := Load(ctx, plugintest.Build(b, bc.dir), Options{Name: bc.name, Config: map[string]string{"url": "https://example.com/hook"}})
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close(ctx)
			for b.Loop() {
				if _, err := p.Call(ctx, event, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
