// Package plugin runs one WebAssembly plugin in wazero: it checks the
// module against lkedge's ABI (docs/abi.md), compiles it once, keeps a
// bounded pool of warm instances, and turns one event into the actions the
// plugin asks for. Every call has a time limit that costs almost nothing
// (see package interrupt); an instance that trapped, timed out, panicked or
// grew past its memory budget is discarded, never reused.
package plugin

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"

	"github.com/lkedge/lkedge/host/plugin/internal/datapack"
	"github.com/lkedge/lkedge/host/plugin/internal/interrupt"
	"github.com/lkedge/lkedge/host/plugin/internal/linmem"
)

// ABIVersion is the plugin ABI this host speaks (docs/abi.md).
const ABIVersion = 1

// Names of the ABI's exports.
const (
	exportABI     = "lkedge_abi_v1"
	exportOnEvent = "lkedge_on_event"
	exportInit    = "_initialize"
)

// checkBudget is how many interrupt checks a guest runs between two looks
// at the clock: a Go guest passes a check every few tens of nanoseconds, so
// it looks about every few hundred microseconds, for well under 1% of its
// time.
const checkBudget = 10000

// initTimeout is the least time an instance's start function and
// _initialize may take, each.
const initTimeout = 5 * time.Second

// tableEntryBytes is what one table entry costs the host: wazero keeps a
// table as a slice of pointer-sized references.
const tableEntryBytes = 8

// Limits bound what one plugin may use.
type Limits struct {
	// Memory is the most linear memory and tables together one instance
	// may grow to, in bytes, a table entry counting 8 bytes (default
	// 64 MiB; a Go plugin needs at least 4 MiB).
	Memory uint64
	// Timeout is the wall time one call may take (default 1 s); a call
	// running longer than runStretch spends most of the rest paused.
	Timeout time.Duration
	// Instances is how many calls may run at once, each in its own warm
	// instance (default 2).
	Instances int
	// MaxActions is how many actions one call may emit (default 16).
	MaxActions int
	// MaxActionBytes is the largest encoded action (default 1 MiB).
	MaxActionBytes int
}

func (l Limits) withDefaults() Limits {
	if l.Memory == 0 {
		l.Memory = 64 << 20
	}
	if l.Timeout <= 0 {
		l.Timeout = time.Second
	}
	if l.Instances <= 0 {
		l.Instances = 2
	}
	if l.MaxActions <= 0 {
		l.MaxActions = 16
	}
	if l.MaxActionBytes <= 0 {
		l.MaxActionBytes = 1 << 20
	}
	return l
}

// Options configure a plugin.
type Options struct {
	// Name identifies the plugin in logs and errors.
	Name   string
	Limits Limits
	// Config holds the values the plugin can read (secrets are not here:
	// plugins only name them).
	Config map[string]string
	// Lookup, if set, answers the plugin's config reads instead of Config,
	// for values that can change while it runs.
	Lookup func(ctx context.Context, key string) (string, bool)
	// CheckAction vets each action as the plugin emits it, so the plugin
	// learns at once that a destination is refused; a non-nil error makes
	// the host answer the guest with NotAllowed.
	CheckAction func(*Action) error
	// Cache shares compiled code between plugins and across restarts.
	Cache wazero.CompilationCache
	// ValidatedDir, if set, is where Load remembers across restarts which
	// modules passed validation, one empty file per module hash, so that a
	// restart does not validate again: validation lowers the whole module
	// into wazero's interpreter, about 80 MB of garbage for a Go plugin,
	// which the Go heap keeps long after. Whoever can write there can
	// already write Cache's compiled code, so it trusts no one new.
	ValidatedDir string
	Logger       *slog.Logger
	// InitTimeout is the wall time an instance's start function may take,
	// and then its _initialize (default Limits.Timeout, at least 5 s:
	// starting Go's runtime costs milliseconds, more on a loaded machine,
	// once per instance).
	InitTimeout time.Duration
	// WaitTimeout is the longest a call waits for a free instance (default
	// InitTimeout + Limits.Timeout, what one call in a fresh instance may
	// take).
	WaitTimeout time.Duration
}

// stopMode is how calls are stopped at their time limit. Production always
// uses stopInterrupt; the benchmarks compare the others through
// testStopMode, a test hook rather than an option nobody else may set.
type stopMode int

// testStopMode is read by Load; only tests change it.
var testStopMode = stopInterrupt

const (
	stopInterrupt   stopMode = iota // the instrumented global (production)
	stopContextDone                 // wazero's WithCloseOnContextDone
	stopNone                        // no limit at all, for comparison only
)

// Plugin is one loaded plugin version. It is safe for concurrent use.
type Plugin struct {
	name   string
	opts   Options
	limits Limits
	// initTimeout and waitTimeout are the effective Options.InitTimeout
	// and Options.WaitTimeout.
	initTimeout time.Duration
	waitTimeout time.Duration
	log         *slog.Logger
	rt          wazero.Runtime
	code        wazero.CompiledModule
	tables      []interrupt.Table // as the module declares them
	stop        stopMode
	slots       chan struct{}
	idle        idlePool
	live        atomic.Int64 // instances alive, idle or busy
	started     atomic.Int64 // instances ever started
	calls       sync.RWMutex
	closing     atomic.Bool
	closed      sync.Once
}

// Load checks and compiles a plugin and starts one instance, so that a
// plugin that cannot even initialize is refused at load, not at its first
// event.
func Load(ctx context.Context, wasm []byte, opts Options) (*Plugin, error) {
	p := &Plugin{name: opts.Name, opts: opts, limits: opts.Limits.withDefaults(), log: opts.Logger}
	p.initTimeout = opts.InitTimeout
	if p.initTimeout <= 0 {
		p.initTimeout = max(p.limits.Timeout, initTimeout)
	}
	p.waitTimeout = opts.WaitTimeout
	if p.waitTimeout <= 0 {
		p.waitTimeout = p.initTimeout + p.limits.Timeout
	}
	if p.log == nil {
		p.log = slog.Default()
	}
	p.log = p.log.With("plugin", p.name)
	if err := interrupt.CheckHeader(wasm); err != nil {
		return nil, fmt.Errorf("plugin %s: %w", p.name, err)
	}
	if err := validate(ctx, wasm, opts.ValidatedDir, p.log); err != nil {
		return nil, fmt.Errorf("plugin %s: invalid module: %w", p.name, err)
	}
	tables, err := interrupt.Tables(wasm)
	if err != nil {
		return nil, fmt.Errorf("plugin %s: %w", p.name, err)
	}
	p.tables = tables
	if wasm, err = datapack.Pack(wasm); err != nil {
		return nil, fmt.Errorf("plugin %s: data section: %w", p.name, err)
	}
	p.stop = testStopMode
	if p.stop == stopInterrupt {
		if wasm, err = interrupt.Instrument(wasm, checkBudget); err != nil {
			return nil, fmt.Errorf("plugin %s: %w", p.name, err)
		}
	}
	pages := (p.limits.Memory + 65535) / 65536
	if pages > 65536 {
		pages = 65536
	}
	cfg := wazero.NewRuntimeConfig().
		WithMemoryLimitPages(uint32(pages)).
		WithCloseOnContextDone(p.stop == stopContextDone).
		WithCustomSections(false)
	if opts.Cache != nil {
		cfg = cfg.WithCompilationCache(opts.Cache)
	}
	p.rt = wazero.NewRuntimeWithConfig(ctx, cfg)
	if err := p.init(ctx, wasm); err != nil {
		_ = p.rt.Close(ctx)
		return nil, fmt.Errorf("plugin %s: %w", p.name, err)
	}
	return p, nil
}

func (p *Plugin) init(ctx context.Context, wasm []byte) error {
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, p.rt); err != nil {
		return fmt.Errorf("wasi: %w", err)
	}
	if err := instantiateHost(ctx, p.rt); err != nil {
		return fmt.Errorf("host module: %w", err)
	}
	code, err := p.rt.CompileModule(ctx, wasm)
	if err != nil {
		return fmt.Errorf("compile: %w", err)
	}
	if err := checkModule(code); err != nil {
		return err
	}
	declared := p.tableBytes(p.tableMins())
	if m, ok := code.ExportedMemories()["memory"]; ok {
		declared += uint64(m.Min()) * 65536
	}
	if declared > p.limits.Memory {
		return fmt.Errorf("memory and tables declare %d bytes, over the memory limit of %d", declared, p.limits.Memory)
	}
	p.code = code
	p.slots = make(chan struct{}, p.limits.Instances)
	inst, err := p.newInstance(ctx)
	if err != nil {
		return err
	}
	p.idle.put(inst)
	return nil
}

// Shrink closes the idle instances beyond keep that have been idle for at
// least idleFor. Each instance holds its linear memory, which never
// shrinks, at the most it ever grew to: after a burst that took every
// instance, a plugin whose calls one instance carries need not keep them
// all warm. A later call that finds none idle starts one, as after a
// failure. It returns how many it closed.
func (p *Plugin) Shrink(keep int, idleFor time.Duration) int {
	p.calls.RLock()
	defer p.calls.RUnlock()
	if p.closing.Load() {
		return 0
	}
	idle := p.idle.take(keep, time.Now().Add(-idleFor))
	for _, inst := range idle {
		inst.close()
	}
	return len(idle)
}

// Instances is the number of live instances, idle or in a call.
func (p *Plugin) Instances() int { return int(p.live.Load()) }

// Started is the number of instances started since the plugin was loaded:
// beside Instances, it shows a plugin whose calls keep discarding theirs.
func (p *Plugin) Started() int64 { return p.started.Load() }

// Name is the plugin's name.
func (p *Plugin) Name() string { return p.name }

// Limits are the plugin's effective limits.
func (p *Plugin) Limits() Limits { return p.limits }

// ErrClosed is returned by Call on a plugin that was replaced or stopped.
var ErrClosed = errors.New("plugin closed")

// Call runs the plugin on one event (its JSON, docs/events.md) and returns
// the actions it emitted. A failed call returns a *CallError.
func (p *Plugin) Call(ctx context.Context, event []byte, log *slog.Logger) ([]Action, error) {
	// Calls share the read lock; Close takes the write lock, so it waits
	// for the calls in flight and no call starts on a closed plugin.
	p.calls.RLock()
	defer p.calls.RUnlock()
	if p.closing.Load() {
		return nil, ErrClosed
	}
	select {
	case p.slots <- struct{}{}:
	default:
		// All instances are busy: wait, but not forever, so a call stuck
		// behind a pool that does not drain fails instead.
		wait := time.NewTimer(p.waitTimeout)
		select {
		case p.slots <- struct{}{}:
			wait.Stop()
		case <-ctx.Done():
			wait.Stop()
			return nil, fmt.Errorf("plugin %s: waiting for an instance: %w", p.name, ctx.Err())
		case <-wait.C:
			return nil, &CallError{Plugin: p.name, Kind: KindBusy, Err: fmt.Errorf("no instance free within %s", p.waitTimeout)}
		}
	}
	defer func() { <-p.slots }()
	inst := p.idle.get()
	if inst == nil {
		var err error
		if inst, err = p.newInstance(ctx); err != nil {
			return nil, &CallError{Plugin: p.name, Kind: KindInit, Err: err}
		}
	}
	if log == nil {
		log = p.log // it names the plugin already
	} else {
		log = log.With("plugin", p.name)
	}
	c := &call{plugin: p, event: event, log: log}
	actions, err := inst.run(ctx, c)
	// A handler that returned, even with an error or with output the host
	// refused, leaves its instance as sound as a successful call does: it
	// goes back to the pool, so a plugin that keeps failing that way costs
	// no fresh instance per event. A trap, an exit or a time limit leaves
	// it broken.
	if !inst.healthy() {
		inst.close()
	} else {
		p.idle.put(inst)
	}
	return actions, err
}

// Close stops the plugin once the calls in flight have finished, so a
// replaced version drains while the new one takes the new events.
func (p *Plugin) Close(ctx context.Context) error {
	p.closing.Store(true)
	var err error
	p.closed.Do(func() {
		p.calls.Lock()
		defer p.calls.Unlock()
		for _, inst := range p.idle.take(0, time.Now()) {
			inst.close()
		}
		err = p.rt.Close(ctx)
	})
	return err
}

// Kinds of call failure, for logs and metrics.
const (
	KindInit    = "init"    // no instance could be started
	KindBusy    = "busy"    // no instance came free in time
	KindTimeout = "timeout" // the time limit stopped it
	KindTrap    = "trap"    // a trap: a Go panic, a deadlock, memory exhausted
	KindExit    = "exit"    // the plugin exited
	KindError   = "error"   // the handler returned an error
	KindOutput  = "output"  // it emitted something the host refused
)

// CallError is a failed plugin call.
type CallError struct {
	Plugin string
	Kind   string
	Err    error
	// Stderr is what the plugin wrote to stderr during the call; Go prints
	// a panic's message and stack there.
	Stderr string
}

func (e *CallError) Error() string {
	msg := fmt.Sprintf("plugin %s: %s: %v", e.Plugin, e.Kind, e.Err)
	if e.Stderr != "" {
		msg += "; stderr: " + e.Stderr
	}
	return msg
}

func (e *CallError) Unwrap() error { return e.Err }

func checkModule(code wazero.CompiledModule) error {
	exports := code.ExportedFunctions()
	if _, ok := exports[exportABI]; !ok {
		for name := range exports {
			var v int
			if _, err := fmt.Sscanf(name, "lkedge_abi_v%d", &v); err == nil {
				return fmt.Errorf("plugin speaks ABI v%d; this lkedge speaks v%d", v, ABIVersion)
			}
		}
		return fmt.Errorf("not an lkedge plugin: no %s export (build it with the lkedge SDK)", exportABI)
	}
	on, ok := exports[exportOnEvent]
	if !ok {
		return fmt.Errorf("missing export %s", exportOnEvent)
	}
	if !sameTypes(on.ParamTypes(), api.ValueTypeI32) || !sameTypes(on.ResultTypes(), api.ValueTypeI32) {
		return fmt.Errorf("export %s must be (i32) -> i32", exportOnEvent)
	}
	if _, ok := code.ExportedMemories()["memory"]; !ok {
		return errors.New("missing exported memory \"memory\"")
	}
	for _, f := range code.ImportedFunctions() {
		mod, name, _ := f.Import()
		switch mod {
		case hostModule:
			if _, ok := hostFunctions[name]; !ok {
				return fmt.Errorf("imports %s.%s, which this lkedge does not provide", mod, name)
			}
		case wasi_snapshot_preview1.ModuleName:
		default:
			return fmt.Errorf("imports from module %q; plugins may import only %q and %q", mod, hostModule, wasi_snapshot_preview1.ModuleName)
		}
	}
	return nil
}

func sameTypes(got []api.ValueType, want ...api.ValueType) bool {
	return bytes.Equal(got, want)
}

// instance is one warm plugin instance, used by one call at a time.
type instance struct {
	p        *Plugin
	mod      api.Module
	onEvent  api.Function
	deadline atomic.Int64
	stderr   capped
	broken   bool
	// tables holds each table's size in entries, as grow_check let it
	// grow (only the guest's goroutine touches it).
	tables []uint64
	// sleeper is the current call's Sleeper, or nil (only the guest's
	// goroutine touches it: an instance never runs two calls at once).
	sleeper Sleeper
}

// Sleeper is a call's place under its caller's bound on how many calls run
// at once. The bound is about CPU: the call gives its place up while the
// plugin sleeps (Sleep, then Wake), and offers it after each stretch of
// running (Yield, see runStretch), so a plugin that sleeps or spins holds
// up only itself and the calls waiting for a place take turns with it.
type Sleeper interface {
	Sleep()
	Wake()
	// Yield lets waiting calls run first, if there are any; the call goes
	// on once it has a place again.
	Yield()
}

type sleeperKey struct{}

// WithSleeper returns ctx for a Call whose sleeps s is told about.
func WithSleeper(ctx context.Context, s Sleeper) context.Context {
	return context.WithValue(ctx, sleeperKey{}, s)
}

// validated remembers, by hash, the modules wazero accepted, so that
// loading the same module again (a reload, another plugin entry) does not
// validate it again.
var validated sync.Map

// validate has wazero check the module as its author wrote it: the
// rewrite behind the time limit assumes a valid module, and appends a
// counter and types that an invalid module's out-of-range indices would
// otherwise reach. wazero's interpreter validates exactly as its compiler
// does, in a fraction of the time. A verdict found in dir (see
// Options.ValidatedDir) counts as this process's own.
func validate(ctx context.Context, wasm []byte, dir string, log *slog.Logger) (err error) {
	sum := sha256.Sum256(wasm)
	if _, ok := validated.Load(sum); ok {
		return nil
	}
	var verdict string
	if dir != "" {
		verdict = filepath.Join(dir, hex.EncodeToString(sum[:]))
		if _, err := os.Stat(verdict); err == nil {
			validated.Store(sum, struct{}{})
			return nil
		}
	}
	err = validateNow(ctx, wasm)
	// The interpreter's lowering is garbage now: collected at once, its
	// memory is what the compile that follows reuses, rather than growing
	// the heap past it (at the next collection's default goal, twice
	// what it held).
	runtime.GC()
	if err != nil {
		return err
	}
	validated.Store(sum, struct{}{})
	if verdict != "" {
		// Not remembering costs the next start a validation, nothing else.
		if err := writeVerdict(dir, verdict); err != nil {
			log.Warn("plugin validated, but the verdict is not kept for the next start", "dir", dir, "err", err)
		}
	}
	return nil
}

func validateNow(ctx context.Context, wasm []byte) (err error) {
	defer func() {
		// wazero v1.12.0 panics on some malformed modules.
		if v := recover(); v != nil {
			err = fmt.Errorf("wazero failed on it: %v", v)
		}
	}()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer rt.Close(ctx)
	code, err := rt.CompileModule(ctx, wasm)
	if err != nil {
		return err
	}
	return code.Close(ctx)
}

func writeVerdict(dir, path string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	return f.Close()
}

func (p *Plugin) newInstance(ctx context.Context) (*instance, error) {
	inst := &instance{p: p, tables: p.tableMins()}
	inst.stderr.limit = 8 << 10
	mc := wazero.NewModuleConfig().
		WithName("").
		WithStartFunctions().
		WithSysWalltime().WithSysNanotime().WithNanosleep(inst.sleep).
		WithRandSource(rand.Reader).
		WithStdout(&inst.stderr).WithStderr(&inst.stderr)
	// The module's start function runs inside InstantiateModule: it gets
	// the same time limit as _initialize.
	c := &call{plugin: p, inst: inst, log: p.log}
	cctx, cancel := inst.arm(experimental.WithMemoryAllocator(ctx, linmem.Allocator()), c, p.initTimeout)
	mod, err := p.rt.InstantiateModule(cctx, p.code, mc)
	cancel()
	if err != nil {
		var exit *sys.ExitError
		if c.timedOut || (errors.As(err, &exit) && exit.ExitCode() == sys.ExitCodeDeadlineExceeded) {
			return nil, fmt.Errorf("start function stopped after its time limit of %s", p.initTimeout)
		}
		return nil, fmt.Errorf("instantiate: %w", err)
	}
	inst.mod = mod
	p.live.Add(1)
	p.started.Add(1)
	inst.onEvent = mod.ExportedFunction(exportOnEvent)
	if f := mod.ExportedFunction(exportInit); f != nil {
		if _, err := inst.run(ctx, &call{plugin: p, log: p.log}); err != nil {
			inst.close()
			return nil, fmt.Errorf("initialize: %w", err)
		}
	}
	return inst, nil
}

// arm sets the call's deadline limit from now and returns the context the
// guest runs under.
func (inst *instance) arm(ctx context.Context, c *call, limit time.Duration) (context.Context, context.CancelFunc) {
	now := time.Now()
	c.deadline = now.Add(limit).UnixNano()
	c.pauseAt = now.Add(runStretch).UnixNano()
	inst.deadline.Store(c.deadline)
	ctx = context.WithValue(ctx, callKey{}, c)
	if inst.p.stop == stopContextDone {
		return context.WithTimeout(ctx, limit)
	}
	return ctx, func() {}
}

// run calls the guest with the time limit armed.
func (inst *instance) run(ctx context.Context, c *call) ([]Action, error) {
	p := inst.p
	limit := p.limits.Timeout
	if c.event == nil {
		limit = p.initTimeout
	}
	inst.stderr.Reset()
	c.inst = inst
	inst.sleeper, _ = ctx.Value(sleeperKey{}).(Sleeper)
	defer func() { inst.sleeper = nil }()
	cctx, cancel := inst.arm(ctx, c, limit)
	defer cancel()
	var res []uint64
	var err error
	if c.event == nil {
		_, err = inst.mod.ExportedFunction(exportInit).Call(cctx)
	} else {
		res, err = inst.onEvent.Call(cctx, uint64(len(c.event)))
	}
	timedOut := c.timedOut
	if err != nil {
		inst.broken = true
	}
	stderr := inst.stderr.String()
	fail := func(kind string, err error) ([]Action, error) {
		return nil, &CallError{Plugin: p.name, Kind: kind, Err: err, Stderr: stderr}
	}
	var exit *sys.ExitError
	switch {
	case timedOut && err != nil, errors.As(err, &exit) && exit.ExitCode() == sys.ExitCodeDeadlineExceeded:
		return fail(KindTimeout, fmt.Errorf("stopped after its time limit of %s", limit))
	case errors.As(err, &exit):
		return fail(KindExit, fmt.Errorf("exited with code %d", exit.ExitCode()))
	case err != nil:
		return fail(KindTrap, err)
	case c.refused != nil:
		return fail(KindOutput, c.refused)
	case c.event != nil && res[0] != 0:
		msg := c.failMsg
		if msg == "" {
			msg = fmt.Sprintf("handler returned %d", int32(res[0]))
		}
		return fail(KindError, errors.New(msg))
	}
	if stderr != "" {
		c.log.Debug("plugin output", "output", stderr)
	}
	return c.actions, nil
}

// sleep is the guest's nanosleep (Go's scheduler sleeps through it): it
// never sleeps past the call's deadline, so a sleeping plugin meets its
// time limit too.
func (inst *instance) sleep(ns int64) {
	left := inst.deadline.Load() - time.Now().UnixNano()
	if ns > left {
		ns = left
	}
	if ns <= 0 {
		return
	}
	if s := inst.sleeper; s != nil {
		s.Sleep()
		defer s.Wake()
	}
	time.Sleep(time.Duration(ns))
}

// maxMemoryShare is how much of its memory budget an instance may keep
// after a call; linear memory never shrinks, so a bloated instance is
// replaced by a fresh one.
const maxMemoryShare = 0.75

func (inst *instance) healthy() bool {
	if inst.broken {
		return false
	}
	return float64(inst.used()) <= maxMemoryShare*float64(inst.p.limits.Memory)
}

// used is what the instance's linear memory and tables take, in bytes.
func (inst *instance) used() uint64 {
	return inst.memorySize() + inst.p.tableBytes(inst.tables)
}

func (inst *instance) memorySize() uint64 {
	if inst.mod == nil || inst.mod.Memory() == nil {
		return 0
	}
	return uint64(inst.mod.Memory().Size())
}

// tableMins is each table's declared size, what a fresh instance holds.
func (p *Plugin) tableMins() []uint64 {
	mins := make([]uint64, len(p.tables))
	for i, t := range p.tables {
		mins[i] = uint64(t.Min)
	}
	return mins
}

func (p *Plugin) tableBytes(tables []uint64) uint64 {
	var n uint64
	for _, t := range tables {
		n += t
	}
	return n * tableEntryBytes
}

// grow answers grow_check: whether memory (what < 0) or table what may
// grow by delta within the memory limit. mem is the guest's memory as
// the host function sees it, also during the start function.
func (inst *instance) grow(mem api.Memory, what int32, delta uint32) bool {
	used := inst.p.tableBytes(inst.tables)
	if mem != nil {
		used += uint64(mem.Size())
	}
	if what < 0 {
		return used+uint64(delta)*65536 <= inst.p.limits.Memory
	}
	if int(what) >= len(inst.tables) {
		return false // wazero traps on an unknown table anyway
	}
	if used+uint64(delta)*tableEntryBytes > inst.p.limits.Memory {
		return false
	}
	size := inst.tables[what] + uint64(delta)
	if size >= math.MaxUint32 || (inst.p.tables[what].HasMax && size > uint64(inst.p.tables[what].Max)) {
		return true // wazero refuses it itself; nothing to count
	}
	inst.tables[what] = size
	return true
}

func (inst *instance) close() {
	inst.p.live.Add(-1)
	_ = inst.mod.Close(context.Background())
}

// capped keeps the first limit bytes written to it: Go's panic message
// comes first, the goroutine dump after it.
type capped struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	limit int
	lost  int
}

func (c *capped) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	room := c.limit - c.buf.Len()
	if room < len(b) {
		if room > 0 {
			c.buf.Write(b[:room])
		}
		c.lost += len(b) - max(room, 0)
		return len(b), nil
	}
	c.buf.Write(b)
	return len(b), nil
}

func (c *capped) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := string(bytes.TrimSpace(c.buf.Bytes()))
	if c.lost > 0 {
		s += fmt.Sprintf(" [%d more bytes dropped]", c.lost)
	}
	return s
}

func (c *capped) Reset() {
	c.mu.Lock()
	c.buf.Reset()
	c.lost = 0
	c.mu.Unlock()
}
