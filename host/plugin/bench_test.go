package plugin

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lkedge/lkedge/host/internal/proccpu"
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

// BenchmarkCallPairs measures the time limit's share of a call the way
// BenchmarkCall cannot on a shared machine, where runs minutes apart differ
// by more than the share: one process loads the typical plugin twice, with
// no limit and with lkedge's, and each iteration calls both, the first of
// the two swapped every time. It reports the median of each and the ratio
// of the medians (limit-x), which the machine's drift moves together.
func BenchmarkCallPairs(b *testing.B) {
	event, err := os.ReadFile("../../testdata/events/egress_updated.event.json")
	if err != nil {
		b.Fatal(err)
	}
	for _, dir := range []string{"testdata/plugins/typical", "testdata/plugins/typical-lazy"} {
		wasm := plugintest.Build(b, dir)
		b.Run(filepath.Base(dir), func(b *testing.B) {
			ctx := context.Background()
			var ps [2]*Plugin
			for i, mode := range []stopMode{stopNone, stopInterrupt} {
				testStopMode = mode
				p, err := Load(ctx, wasm, Options{Name: "typical", Config: map[string]string{"url": "https://example.com/hook"}})
				testStopMode = stopInterrupt
				if err != nil {
					b.Fatal(err)
				}
				defer p.Close(ctx)
				ps[i] = p
			}
			var took [2][]time.Duration
			n := 0
			for b.Loop() {
				for k := range 2 {
					i := (n + k) % 2
					start := time.Now()
					if _, err := ps[i].Call(ctx, event, nil); err != nil {
						b.Fatal(err)
					}
					took[i] = append(took[i], time.Since(start))
				}
				n++
			}
			unlimited, limited := median(took[0]), median(took[1])
			b.ReportMetric(float64(unlimited.Nanoseconds()), "unlimited-ns")
			b.ReportMetric(float64(limited.Nanoseconds()), "limited-ns")
			b.ReportMetric(float64(limited)/float64(unlimited), "limit-x")
		})
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkPlugins is one pooled call, with lkedge's time limit, of
// plugins doing more and more on the same 1 KB event: noop only has the
// SDK read and decode it, typical asks for one small signed JSON webhook,
// standard-webhooks forwards the whole event. The -lazy forms take the
// event with sdk.HandleLazy, which decodes only what the handler reads.
func BenchmarkPlugins(b *testing.B) {
	event, err := os.ReadFile("../../testdata/events/egress_updated.event.json")
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct{ name, dir string }{
		{"noop", "testdata/plugins/noop"},
		{"noop-lazy", "testdata/plugins/noop-lazy"},
		{"typical", "testdata/plugins/typical"},
		{"typical-lazy", "testdata/plugins/typical-lazy"},
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

// BenchmarkModules calls prebuilt modules, each *.wasm file in the
// directory LKEDGE_BENCH_MODULES (skipped when unset), as BenchmarkPlugins
// calls its plugins: so that two builds of the same plugin, say with two
// versions of the SDK, can be compared side by side in one run. It also
// reports the CPU time per call, which other work on a shared machine
// blurs less than the wall time, and the module's size.
func BenchmarkModules(b *testing.B) {
	event, err := os.ReadFile("../../testdata/events/egress_updated.event.json")
	if err != nil {
		b.Fatal(err)
	}
	mods := benchModules(b)
	for _, name := range slices.Sorted(maps.Keys(mods)) {
		wasm := mods[name]
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			p, err := Load(ctx, wasm, Options{Name: name, Config: benchConfig})
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close(ctx)
			cpu0 := proccpu.Used()
			for b.Loop() {
				if _, err := p.Call(ctx, event, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(proccpu.Used()-cpu0)/float64(b.N), "cpu-ns/op")
			b.ReportMetric(float64(len(wasm)), "module-bytes")
		})
	}
}

// BenchmarkInstanceMemory is the resident memory one warm instance of each
// module in LKEDGE_BENCH_MODULES costs: the process's RSS growth over 16
// instances, each having handled 2 000 events (so that a Go guest's heap
// has grown to its collector's goal, which a few events do not reach),
// divided by 16, and the size of an instance's linear memory, which is
// most of it and is not blurred by the host's own heap. Its one iteration
// is the whole measurement; run it with -benchtime 1x and its own -count.
func BenchmarkInstanceMemory(b *testing.B) {
	const n, events = 16, 2000
	event, err := os.ReadFile("../../testdata/events/egress_updated.event.json")
	if err != nil {
		b.Fatal(err)
	}
	mods := benchModules(b)
	for _, name := range slices.Sorted(maps.Keys(mods)) {
		wasm := mods[name]
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			for b.Loop() {
				p, err := Load(ctx, wasm, Options{Name: name, Config: benchConfig, Limits: Limits{Instances: n + 1}})
				if err != nil {
					b.Fatal(err)
				}
				runtime.GC()
				before := rss(b)
				insts := make([]*instance, n)
				for i := range insts {
					if insts[i], err = p.newInstance(ctx); err != nil {
						b.Fatal(err)
					}
					for range events {
						if _, err := insts[i].run(ctx, &call{plugin: p, event: event, log: p.log}); err != nil {
							b.Fatal(err)
						}
					}
				}
				runtime.GC()
				after := rss(b)
				var linear uint64
				for _, inst := range insts {
					linear += inst.memorySize()
				}
				b.ReportMetric(float64(after-before)/n/(1<<20), "MiB/instance")
				b.ReportMetric(float64(linear)/n/(1<<20), "linear-MiB/instance")
				for _, inst := range insts {
					inst.close()
				}
				_ = p.Close(ctx)
			}
		})
	}
}

// BenchmarkLoad is what a loaded plugin of each module in
// LKEDGE_BENCH_MODULES keeps on the Go heap (its compiled module and one
// warm instance, measured once, after a collection), and what one more
// instance costs to start, per iteration.
func BenchmarkLoad(b *testing.B) {
	mods := benchModules(b)
	for _, name := range slices.Sorted(maps.Keys(mods)) {
		wasm := mods[name]
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			p, err := Load(ctx, wasm, Options{Name: name, Config: benchConfig})
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close(ctx)
			runtime.GC()
			runtime.ReadMemStats(&after)
			for b.Loop() {
				inst, err := p.newInstance(ctx)
				if err != nil {
					b.Fatal(err)
				}
				inst.close()
			}
			b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "heap-MiB/plugin")
		})
	}
}

// benchConfig is the config of the modules of LKEDGE_BENCH_MODULES: a URL
// for all, and enabled for openvidu-webhook, which otherwise sends nothing.
var benchConfig = map[string]string{"url": "https://example.com/hook", "enabled": "true"}

// benchModules reads the modules in LKEDGE_BENCH_MODULES, by file name
// without .wasm.
func benchModules(b *testing.B) map[string][]byte {
	dir := os.Getenv("LKEDGE_BENCH_MODULES")
	if dir == "" {
		b.Skip("LKEDGE_BENCH_MODULES is not set")
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.wasm"))
	if err != nil || len(files) == 0 {
		b.Fatalf("no modules in %s (%v)", dir, err)
	}
	mods := map[string][]byte{}
	for _, f := range files {
		wasm, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		mods[strings.TrimSuffix(filepath.Base(f), ".wasm")] = wasm
	}
	return mods
}
