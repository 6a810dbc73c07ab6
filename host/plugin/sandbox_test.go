package plugin

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/lkedge/lkedge/host/plugin/internal/wasmtest"
)

// Types of the crafted plugins' functions.
const (
	tVoid   = 0 // () -> ()
	tEvent  = 1 // (i32) -> i32
	tLog    = 2 // (i32, i32, i32, i32, i32) -> i32
	tConfig = 3 // (i32, i32, i32, i32) -> i32
)

// crafted is a hand-assembled plugin: it speaks the ABI (lkedge_abi_v1,
// lkedge_on_event, memory "memory") and does exactly what its code says.
// Function indices: the imports, then lkedge_abi_v1, lkedge_on_event and
// the start function.
type crafted struct {
	imports  [][]byte
	memPages uint32
	tables   [][]byte
	globals  [][]byte
	elements [][]byte
	data     string // at address 0
	onEvent  [][]byte
	start    [][]byte
}

func (c crafted) fnABI() uint32 { return uint32(len(c.imports)) }

func (c crafted) wasm() []byte {
	i32x := func(n int) []byte { return []byte(strings.Repeat(string(rune(I32)), n)) }
	funcs := [][]byte{Leb(tVoid), Leb(tEvent)}
	bodies := [][]byte{Body(nil), Body(nil, c.onEvent...)}
	if c.start != nil {
		funcs = append(funcs, Leb(tVoid))
		bodies = append(bodies, Body(nil, c.start...))
	}
	secs := [][]byte{
		Sec(SecType, Vec(FuncType(nil, nil), FuncType(i32x(1), i32x(1)), FuncType(i32x(5), i32x(1)), FuncType(i32x(4), i32x(1)))),
		Sec(SecImport, Vec(c.imports...)),
		Sec(SecFunction, Vec(funcs...)),
		Sec(SecTable, Vec(c.tables...)),
		Sec(SecMemory, Vec(Cat([]byte{0x00}, Leb(uint64(c.memPages))))),
		Sec(SecGlobal, Vec(c.globals...)),
		Sec(SecExport, Vec(
			Export("memory", ExportMemory, 0),
			Export(exportABI, ExportFunc, c.fnABI()),
			Export(exportOnEvent, ExportFunc, c.fnABI()+1),
		)),
	}
	if c.start != nil {
		secs = append(secs, Sec(SecStart, Leb(uint64(c.fnABI()+2))))
	}
	secs = append(secs, Sec(SecElement, Vec(c.elements...)), Sec(SecCode, Vec(bodies...)))
	if c.data != "" {
		secs = append(secs, Sec(SecData, Vec(Cat(Leb(0), ConstExpr(I32Const(0)), Str(c.data)))))
	}
	return Module(secs...)
}

// spin is a loop that never ends.
var spin = Cat(Op(OpLoop, BlockEmpty), Op(OpBr, 0), Op(OpEnd))

// TestLoadRefusesIndicesPastItsOwn: the rewrite appends the budget
// counter as the module's last global. A module that writes that index is
// invalid as written; validated only after the rewrite it was accepted,
// and refilled its own budget forever. It is refused at load, with an
// error naming the plugin.
func TestLoadRefusesIndicesPastItsOwn(t *testing.T) {
	ctx := context.Background()
	refill := Cat(Op(OpLoop, BlockEmpty), I32Const(1<<30), Op(OpGlobalSet, 0), Op(OpBr, 0), Op(OpEnd), I32Const(0))
	for _, tc := range []struct {
		name string
		mod  crafted
		want string
	}{
		{"sets the budget global", crafted{memPages: 1, onEvent: [][]byte{refill}}, "global"},
		{"sets the global after its own", crafted{memPages: 1,
			globals: [][]byte{Cat([]byte{I32, 0x01}, ConstExpr(I32Const(0)))},
			onEvent: [][]byte{Cat(Op(OpLoop, BlockEmpty), I32Const(1<<30), Op(OpGlobalSet, 1), Op(OpBr, 0), Op(OpEnd), I32Const(0))}}, "global"},
		{"reads it in a global initializer", crafted{memPages: 1,
			globals: [][]byte{Cat([]byte{I32, 0x00}, ConstExpr(Op(OpGlobalGet, 1)))},
			onEvent: [][]byte{I32Const(0)}}, "global"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Load(ctx, tc.mod.wasm(), Options{Name: "thief", Limits: Limits{Timeout: 100 * time.Millisecond}})
			if err == nil {
				p.Close(ctx)
				t.Fatal("Load accepted the module")
			}
			if msg := err.Error(); !strings.Contains(msg, "plugin thief: invalid module") || !strings.Contains(msg, tc.want) {
				t.Errorf("Load error %q, want one naming the plugin, an invalid module and %q", msg, tc.want)
			}
		})
	}
}

// TestTableInitializerKeepsItsFunction: a table whose initializer
// expression (function-references proposal) holds the plugin's own
// lkedge_abi_v1. Left unrenumbered by the rewrite, the index named the
// host's interrupt_check import instead: the slot then held a host
// function the guest could call at will, and here the call_indirect of a
// () -> () trapped on the check's () -> i32. Through the real host, the
// plugin's call must reach its own function and succeed.
func TestTableInitializerKeepsItsFunction(t *testing.T) {
	ctx := context.Background()
	c := crafted{memPages: 1, // no imports: lkedge_abi_v1 is function 0
		tables:  [][]byte{Cat([]byte{0x40, 0x00, FuncRef, 0x00, 0x01}, ConstExpr(Op(OpRefFunc, 0)))},
		onEvent: [][]byte{I32Const(0), Op(0x11, tVoid, 0), I32Const(0)}, // call_indirect slot 0, then status 0
	}
	p, err := Load(ctx, c.wasm(), Options{Name: "tabled", Limits: Limits{Timeout: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(ctx)
	if _, err := p.Call(ctx, readEvent(t), nil); err != nil {
		t.Errorf("Call = %v, want the plugin's own function called through its table", err)
	}
}

// TestBulkMemoryStoppedAtLimit: one memory.fill of 16 MiB per loop turn
// passes one budget check per turn; unless the fill is charged by its
// size, the loop runs thousands of fills before the guest looks at the
// clock (seconds past a 100 ms limit), and a garbage collection waiting to
// stop the world waits as long, with every goroutine of the service.
func TestBulkMemoryStoppedAtLimit(t *testing.T) {
	ctx := context.Background()
	const size = 16 << 20
	fill := Cat(Op(OpLoop, BlockEmpty), I32Const(0), I32Const(0xAB), I32Const(size), Op(OpPrefixFC, FCMemoryFill, 0), Op(OpBr, 0), Op(OpEnd), I32Const(0))
	wasm := crafted{memPages: size / 65536, onEvent: [][]byte{fill}}.wasm()
	event := readEvent(t)
	// run calls the plugin with the given limit while this goroutine
	// collects garbage and sleeps 1 ms, again and again: how long each
	// round takes is what every goroutine of the service would wait.
	run := func(limit time.Duration) (took time.Duration, rounds []time.Duration) {
		p, err := Load(ctx, wasm, Options{Name: "filler", Limits: Limits{Timeout: limit, Memory: 32 << 20}})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close(ctx)
		done := make(chan time.Duration, 1)
		var callErr error
		go func() {
			start := time.Now()
			_, callErr = p.Call(ctx, event, nil)
			done <- time.Since(start)
		}()
		for took == 0 {
			start := time.Now()
			runtime.GC()
			time.Sleep(time.Millisecond)
			rounds = append(rounds, time.Since(start))
			select {
			case took = <-done:
			default:
			}
		}
		var ce *CallError
		if !errors.As(callErr, &ce) || ce.Kind != KindTimeout {
			t.Fatalf("Call = %v, want a timeout", callErr)
		}
		return took, rounds
	}
	t.Run("stopped at the limit", func(t *testing.T) {
		took, _ := run(100 * time.Millisecond)
		t.Logf("call stopped after %s", took)
		if took > 600*time.Millisecond {
			t.Errorf("call stopped after %s, limit 100ms", took)
		}
	})
	t.Run("others go on", func(t *testing.T) {
		// A longer limit, for rounds to count. The first round waits for
		// the first fill, which also faults in the 16 MiB: one operation
		// runs to its end once started.
		took, rounds := run(time.Second)
		t.Logf("call stopped after %s; GC and 1 ms sleep meanwhile: %v", took, rounds)
		if len(rounds) < 5 {
			t.Fatalf("%d GC rounds in %s: the plugin held the world stopped", len(rounds), took)
		}
		sorted := slices.Clone(rounds)
		slices.Sort(sorted)
		if median := sorted[len(sorted)/2]; median > 100*time.Millisecond {
			t.Errorf("median GC and 1 ms sleep took %s next to the plugin", median)
		}
	})
}

// startSpinner is a plugin whose start function spins, unless the host
// says config key "spin" does not exist, and whose lkedge_on_event spins
// when key "loop" exists and traps when "trap" does.
func startSpinner() crafted {
	configGet := func(key uint32) []byte {
		return Cat(I32Const(int32(key)), I32Const(4), I32Const(0), I32Const(0), Op(OpCall, 0))
	}
	const notFound = -3
	return crafted{
		imports:  [][]byte{ImportFunc(hostModule, "config_get", tConfig)},
		memPages: 1,
		data:     "spinlooptrap",
		start:    [][]byte{configGet(0), I32Const(notFound), Op(OpI32Ne), Op(OpIf, BlockEmpty), spin, Op(OpEnd)},
		onEvent: [][]byte{
			configGet(4), I32Const(0), Op(OpI32GeS), Op(OpIf, BlockEmpty), spin, Op(OpEnd),
			configGet(8), I32Const(0), Op(OpI32GeS), Op(OpIf, BlockEmpty), Op(OpUnreachable), Op(OpEnd),
			I32Const(0),
		},
	}
}

// switches is a config whose keys the test sets while plugins run.
type switches struct {
	mu sync.Mutex
	on map[string]bool
}

func (s *switches) set(key string, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.on == nil {
		s.on = map[string]bool{}
	}
	s.on[key] = on
}

func (s *switches) lookup(_ context.Context, key string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return "x", s.on[key]
}

// TestStartFunctionLimited: a start function runs inside instantiation,
// at load and whenever the pool starts a fresh instance. One that spins is
// stopped at Options.InitTimeout, the instance discarded and the error
// returned, while a good plugin next to it keeps serving; and a call does
// not wait for a free instance past Options.WaitTimeout.
func TestStartFunctionLimited(t *testing.T) {
	ctx := context.Background()
	event := readEvent(t)
	wasm := startSpinner().wasm()
	good, err := Load(ctx, crafted{memPages: 1, onEvent: [][]byte{I32Const(0)}}.wasm(), Options{Name: "good"})
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close(ctx)
	limits := Limits{Timeout: 200 * time.Millisecond, Instances: 1}

	// bounded runs f, failing the test if it does not return in time.
	bounded := func(what string, f func()) {
		t.Helper()
		done := make(chan struct{})
		go func() { f(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s did not return within 5s", what)
		}
	}
	// Meanwhile the good plugin serves.
	var served []error
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			start := time.Now()
			_, err := good.Call(ctx, event, nil)
			if d := time.Since(start); err == nil && d > 100*time.Millisecond {
				err = errors.New("good call took " + d.String())
			}
			served = append(served, err)
		}
	})
	defer func() {
		close(stop)
		wg.Wait()
		for _, err := range served {
			if err != nil {
				t.Errorf("good plugin: %v", err)
			}
		}
		if len(served) < 3 {
			t.Errorf("good plugin served %d events, want at least 3", len(served))
		}
	}()

	t.Run("at load", func(t *testing.T) {
		cfg := &switches{}
		cfg.set("spin", true)
		var err error
		bounded("Load", func() {
			_, err = Load(ctx, wasm, Options{Name: "spinner", Lookup: cfg.lookup, Limits: limits, InitTimeout: 200 * time.Millisecond})
		})
		if err == nil || !strings.Contains(err.Error(), "plugin spinner: start function stopped after its time limit of 200ms") {
			t.Fatalf("Load = %v, want the start function stopped", err)
		}
	})
	t.Run("fresh instance in a call", func(t *testing.T) {
		cfg := &switches{}
		p, err := Load(ctx, wasm, Options{Name: "spinner", Lookup: cfg.lookup, Limits: limits, InitTimeout: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close(ctx)
		cfg.set("trap", true) // the pooled instance goes
		if _, err := p.Call(ctx, event, nil); err == nil {
			t.Fatal("trap did not fail the call")
		}
		cfg.set("spin", true) // and its replacement's start spins
		for range 2 {
			var err error
			bounded("Call", func() { _, err = p.Call(ctx, event, nil) })
			var ce *CallError
			if !errors.As(err, &ce) || ce.Kind != KindInit || !strings.Contains(err.Error(), "start function stopped after its time limit of 200ms") {
				t.Fatalf("Call = %v, want an init failure: the start function stopped", err)
			}
			if n := p.Instances(); n != 0 {
				t.Errorf("%d instances alive, want the stopped one discarded", n)
			}
		}
	})
	t.Run("waiting for an instance", func(t *testing.T) {
		cfg := &switches{}
		p, err := Load(ctx, wasm, Options{Name: "spinner", Lookup: cfg.lookup,
			Limits: Limits{Timeout: 2 * time.Second, Instances: 1}, WaitTimeout: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close(ctx)
		cfg.set("loop", true)
		busy := make(chan error, 1)
		go func() { _, err := p.Call(ctx, event, nil); busy <- err }()
		time.Sleep(50 * time.Millisecond) // the only instance is taken
		start := time.Now()
		_, err = p.Call(ctx, event, nil)
		waited := time.Since(start)
		var ce *CallError
		if !errors.As(err, &ce) || ce.Kind != KindBusy || !strings.Contains(err.Error(), "no instance free within 100ms") {
			t.Errorf("Call = %v, want busy", err)
		}
		if waited > time.Second {
			t.Errorf("waited %s for an instance, limit 100ms", waited)
		}
		<-busy
	})
}

// rss is the process's resident memory, in bytes.
func rss(t testing.TB) uint64 {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Skip("no /proc/self/status")
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// tableGrower grows its table by delta entries, each the function
// lkedge_abi_v1 (so wazero writes every new entry), then its memory by
// pages (if any); it returns 0 when the table grow failed or not as
// tableFails says, and likewise for the memory grow.
func tableGrower(delta int32, tableFails bool, pages int32, memoryFails bool) crafted {
	c := crafted{memPages: 1, tables: [][]byte{{FuncRef, 0x00, 1}}}
	// A declarative segment, so ref.func may name the function.
	c.elements = [][]byte{Cat(Leb(3), []byte{0x00}, Vec(Leb(uint64(c.fnABI()))))}
	outcome := func(fails bool) []byte {
		b := Cat(I32Const(-1), Op(OpI32Eq)) // 1 if it failed
		if fails {
			b = Cat(b, Op(OpI32Eqz))
		}
		return b
	}
	code := Cat(Op(OpRefFunc, c.fnABI()), I32Const(delta), Op(OpPrefixFC, FCTableGrow, 0), outcome(tableFails))
	if pages > 0 {
		code = Cat(code, I32Const(pages), Op(OpMemoryGrow, 0), outcome(memoryFails), Op(OpI32Add))
	}
	c.onEvent = [][]byte{code}
	return c
}

// TestTablesCountAgainstMemory: a table entry costs the host 8 bytes, so
// tables, as declared and as grown, count against the plugin's memory
// limit together with its linear memory.
func TestTablesCountAgainstMemory(t *testing.T) {
	ctx := context.Background()
	event := readEvent(t)
	const limit = 16 << 20
	load := func(t *testing.T, c crafted) *Plugin {
		t.Helper()
		p, err := Load(ctx, c.wasm(), Options{Name: "tables", Limits: Limits{Memory: limit, Instances: 1}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Close(ctx) })
		return p
	}
	t.Run("declared", func(t *testing.T) {
		c := crafted{memPages: 1, tables: [][]byte{Cat([]byte{FuncRef, 0x00}, Leb(4<<20))}, onEvent: [][]byte{I32Const(0)}}
		_, err := Load(ctx, c.wasm(), Options{Name: "tables", Limits: Limits{Memory: limit}})
		if err == nil || !strings.Contains(err.Error(), "plugin tables: memory and tables declare 33619968 bytes, over the memory limit of 16777216") {
			t.Fatalf("Load = %v, want the declared tables refused", err)
		}
	})
	t.Run("grow past the limit fails", func(t *testing.T) {
		p := load(t, tableGrower(1<<25, true, 0, false)) // 256 MiB of entries
		runtime.GC()
		before := rss(t)
		if _, err := p.Call(ctx, event, nil); err != nil {
			t.Fatalf("Call = %v, want table.grow to return -1", err)
		}
		if after := rss(t); after > before+64<<20 {
			t.Errorf("RSS grew from %d to %d MiB", before>>20, after>>20)
		}
		if n := p.Instances(); n != 1 {
			t.Errorf("%d instances, want the instance kept", n)
		}
	})
	t.Run("grow within the limit, past three quarters", func(t *testing.T) {
		p := load(t, tableGrower(1700000, false, 0, false)) // 13.6 MB
		if _, err := p.Call(ctx, event, nil); err != nil {
			t.Fatalf("Call = %v, want table.grow to succeed", err)
		}
		if n := p.Instances(); n != 0 {
			t.Errorf("%d instances, want the grown one discarded", n)
		}
	})
	t.Run("memory cannot grow into what tables took", func(t *testing.T) {
		p := load(t, tableGrower(1700000, false, 64, true)) // 13.6 MB, then 4 MiB
		if _, err := p.Call(ctx, event, nil); err != nil {
			t.Fatalf("Call = %v, want table.grow to succeed and memory.grow to fail", err)
		}
	})
}

// TestLogLevelClamped: a plugin passes any i32 as its log level; the
// host's line says DEBUG, INFO, WARN or ERROR, never ERROR+12337.
func TestLogLevelClamped(t *testing.T) {
	ctx := context.Background()
	logAt := func(level int32, msg uint32) []byte {
		return Cat(I32Const(level), I32Const(int32(msg)), I32Const(2), I32Const(0), I32Const(0), Op(OpCall, 0), Op(OpDrop))
	}
	c := crafted{
		imports:  [][]byte{ImportFunc(hostModule, "log", tLog)},
		memPages: 1,
		data:     "hilo",
		onEvent:  [][]byte{logAt(12345, 0), logAt(-100, 2), I32Const(0)},
	}
	var logs logBuf
	p, err := Load(ctx, c.wasm(), Options{Name: "loud", Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.Level(-1000)}))})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(ctx)
	if _, err := p.Call(ctx, readEvent(t), nil); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	for _, want := range []string{"level=ERROR msg=hi plugin=loud", "level=DEBUG msg=lo plugin=loud"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "ERROR+") || strings.Contains(out, "DEBUG-") {
		t.Errorf("unclamped level in the log:\n%s", out)
	}
	for line := range strings.Lines(out) {
		if n := strings.Count(line, "plugin="); n != 1 {
			t.Errorf("%d plugin keys in one line: %s", n, line)
		}
	}
}
