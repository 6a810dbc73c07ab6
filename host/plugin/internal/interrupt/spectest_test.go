package interrupt

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/lkedge/lkedge/host/plugin/internal/datapack"
)

// The WebAssembly specification's test suite, as wazero ships it in its
// module (wast2json output: a JSON script per .wast and the modules it
// names), for the features wazero enables by default (WebAssembly 2.0).
const specDir = "internal/integration_test/spectest"

var (
	startIndex = regexp.MustCompile(`start function\[\d+\]`)
	// importFailure matches wazero's errors for an import that does not
	// resolve. wazero resolves imports module by module in a map's order,
	// so when imports from two modules fail, the one it names changes from
	// run to run (FuzzInstrument failed in CI on "module[env]" against
	// "module[hist]" for one module); an outcome keeps only the kind, and
	// FuzzInstrument compares the import lists themselves.
	importFailure = regexp.MustCompile(`(?s)^(module\[.*\] not instantiated|".*" is not exported in module ".*"|export ".*" in module ".*" is a .*|import (func|table|memory|global)\[.*)$`)
)

// outcome is what a failure says, comparable across the written and the
// rewritten module and across runs: its first line, without the start
// function's index (the rewrite's imports move it) and, for an import that
// does not resolve, without which one.
func outcome(err error) string {
	if importFailure.MatchString(err.Error()) { // names may hold line breaks
		return "an import does not resolve"
	}
	msg, _, _ := strings.Cut(err.Error(), "\n")
	return startIndex.ReplaceAllString(msg, "start function[...]")
}

type specScript struct {
	Commands []specCommand `json:"commands"`
}

type specCommand struct {
	Type       string     `json:"type"`
	Line       int        `json:"line"`
	Name       string     `json:"name"`
	Filename   string     `json:"filename"`
	As         string     `json:"as"`
	ModuleType string     `json:"module_type"`
	Action     specAction `json:"action"`
}

type specAction struct {
	Type   string      `json:"type"`
	Module string      `json:"module"`
	Field  string      `json:"field"`
	Args   []specValue `json:"args"`
}

type specValue struct {
	Type  string `json:"type"`
	Value any    `json:"value"`
}

// args turns the script's arguments into wazero's uint64 encoding.
func (a specAction) args() ([]uint64, error) {
	var out []uint64
	for _, v := range a.Args {
		switch v.Type {
		case "i32", "i64", "f32", "f64": // unsigned decimal, floats as bits
			s, _ := v.Value.(string)
			n, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%s argument %v: %w", v.Type, v.Value, err)
			}
			out = append(out, n)
		case "externref": // wazero's null is 0, so the script's n is n+1
			s, _ := v.Value.(string)
			if s == "null" {
				out = append(out, 0)
				continue
			}
			n, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return nil, err
			}
			out = append(out, n+1)
		case "funcref":
			out = append(out, 0) // the scripts pass only null
		case "v128":
			lanes, _ := v.Value.([]any)
			var b []byte
			for _, l := range lanes {
				s, _ := l.(string)
				n, err := strconv.ParseUint(s, 10, 64)
				if err != nil {
					return nil, err
				}
				b = append(b, byte(n), byte(n>>8), byte(n>>16), byte(n>>24), byte(n>>32), byte(n>>40), byte(n>>48), byte(n>>56))
			}
			// Lanes of 8, 16, 32 or 64 bits: repack from the lane count.
			packed := make([]byte, 16)
			if len(lanes) > 0 {
				width := 16 / len(lanes)
				for i := range lanes {
					copy(packed[i*width:(i+1)*width], b[i*8:i*8+width])
				}
			}
			var lo, hi uint64
			for i := 7; i >= 0; i-- {
				lo = lo<<8 | uint64(packed[i])
				hi = hi<<8 | uint64(packed[8+i])
			}
			out = append(out, lo, hi)
		default:
			return nil, fmt.Errorf("argument type %s", v.Type)
		}
	}
	return out, nil
}

// wazeroDir is where the Go toolchain keeps the wazero module.
func wazeroDir(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/tetratelabs/wazero").Output()
	if err != nil {
		t.Fatalf("go list wazero: %v", err)
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		t.Fatal("wazero's module is not in the module cache")
	}
	return dir
}

// packed counts the modules whose data segments datapack.Pack merged.
var packed atomic.Int64

// hostRewrite is what package plugin does to a module wazero accepts:
// datapack.Pack merges its data segments, then Instrument adds the checks.
// Run together here, the spec suite is the oracle for both.
func hostRewrite(wasm []byte) ([]byte, error) {
	p, err := datapack.Pack(wasm)
	if err != nil {
		return nil, fmt.Errorf("datapack: %w", err)
	}
	if len(p) != len(wasm) {
		packed.Add(1)
	}
	return Instrument(p, 1000)
}

// specRun runs one script in a fresh runtime of wazero's interpreter,
// with every module the script instantiates rewritten or not, and returns
// what each command gave, for the other run to match.
func specRun(t *testing.T, dir, script string, rewrite bool) []string {
	ctx := context.Background()
	raw, err := os.ReadFile(filepath.Join(dir, script))
	if err != nil {
		t.Fatal(err)
	}
	var s specScript
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatal(err)
	}
	// A memory limit of 16 MiB keeps memory_grow's scripts from
	// allocating gigabytes; it refuses the same grows in both runs.
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter().WithMemoryLimitPages(256))
	defer rt.Close(ctx)
	host, err := os.ReadFile(filepath.Join(dir, "..", "..", "testdata", "spectest.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rt.InstantiateWithConfig(ctx, host, wazero.NewModuleConfig().WithName("spectest")); err != nil {
		t.Fatal(err)
	}
	// The host side of the rewrite: always a new budget, every growth.
	chk := &checker{fallback: 1000}
	if _, err := rt.NewHostModuleBuilder(Module).
		NewFunctionBuilder().WithFunc(chk.check).Export(Name).
		NewFunctionBuilder().WithFunc(func(delta uint32, _ int32) uint32 { return delta }).Export(GrowName).
		Instantiate(ctx); err != nil {
		t.Fatal(err)
	}

	var out []string
	modules := map[string]api.Module{}
	var last api.Module
	load := func(c specCommand, name string) (api.Module, error) {
		wasm, err := os.ReadFile(filepath.Join(dir, c.Filename))
		if err != nil {
			t.Fatal(err)
		}
		if rewrite {
			if err := compile(ctx, rt, wasm); err != nil {
				return nil, err // refused as written: nothing to rewrite
			}
			if wasm, err = hostRewrite(wasm); err != nil {
				t.Errorf("%s:%d: wazero accepts the module, the rewrite refuses it: %v", script, c.Line, err)
				return nil, err
			}
		}
		return rt.InstantiateWithConfig(ctx, wasm, wazero.NewModuleConfig().WithName(name))
	}
	for i := 0; i < len(s.Commands); i++ {
		c := s.Commands[i]
		res := fmt.Sprintf("line %d %s: ", c.Line, c.Type)
		switch c.Type {
		case "module":
			name := ""
			if i+1 < len(s.Commands) && s.Commands[i+1].Type == "register" {
				name = s.Commands[i+1].As
				i++
			}
			m, err := load(c, name)
			if err != nil {
				res += "refused: " + outcome(err)
				last = nil
			} else {
				res += "ok"
				last = m
				if c.Name != "" {
					modules[c.Name] = m
				}
			}
		case "register":
			// Not right after its module (those are handled above):
			// wazero names a module when it instantiates it, so the
			// name is not registered, the same way in both runs.
			res += "not registered"
		case "assert_unlinkable", "assert_uninstantiable":
			if _, err := load(c, ""); err != nil {
				res += "refused: " + outcome(err)
			} else {
				res += "ok"
			}
		case "assert_invalid", "assert_malformed":
			if c.ModuleType == "text" || !rewrite {
				continue
			}
			// Refused as written must stay refused: the rewrite must not
			// make an invalid module valid.
			wasm, err := os.ReadFile(filepath.Join(dir, c.Filename))
			if err != nil {
				t.Fatal(err)
			}
			if compile(ctx, rt, wasm) == nil {
				continue
			}
			if after, err := hostRewrite(wasm); err == nil && compile(ctx, rt, after) == nil {
				t.Errorf("%s:%d: %s module wazero refuses is valid after the rewrite", script, c.Line, c.Type)
			}
			continue
		case "assert_exhaustion":
			// Recursing until the stack runs out takes seconds in the
			// interpreter; what the entry checks do to recursion is
			// TestStops's and TestRecursionWithoutRewrite's.
			continue
		case "assert_return", "assert_trap", "action":
			m := last
			if c.Action.Module != "" {
				m = modules[c.Action.Module]
			}
			if m == nil {
				res += "no module"
				break
			}
			if c.Action.Type == "get" {
				g := m.ExportedGlobal(c.Action.Field)
				if g == nil {
					res += "no global"
				} else {
					res += fmt.Sprint(g.Get())
				}
				break
			}
			f := m.ExportedFunction(c.Action.Field)
			if f == nil {
				res += "no function " + c.Action.Field
				break
			}
			args, err := c.Action.args()
			if err != nil {
				t.Fatalf("%s:%d: %v", script, c.Line, err)
			}
			results, err := f.Call(ctx, args...)
			if err != nil {
				res += "trap: " + outcome(err)
				break
			}
			// References are host addresses, which differ between two
			// runtimes; only whether one is null compares.
			for j, typ := range f.Definition().ResultTypes() {
				if j >= len(results) {
					break
				}
				if typ == funcref && results[j] != 0 {
					results[j] = math.MaxUint64
				}
			}
			res += fmt.Sprint(results)
		default:
			continue
		}
		out = append(out, res)
	}
	return out
}

// TestSpecSuite: every module of the specification's test suite that
// wazero accepts is accepted after the rewrite and, run by wazero's
// interpreter, gives the same results and the same traps for every
// command of its script; and no module wazero refuses becomes valid.
func TestSpecSuite(t *testing.T) {
	dir := filepath.Join(wazeroDir(t), specDir, "v2", "testdata")
	scripts, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(scripts) == 0 {
		t.Fatalf("no spec scripts in %s: %v", dir, err)
	}
	var modules atomic.Int64
	t.Cleanup(func() {
		t.Logf("%d scripts, %d modules accepted and compared, %d of them with data segments merged",
			len(scripts), modules.Load(), packed.Load())
	})
	for _, path := range scripts {
		script := filepath.Base(path)
		t.Run(strings.TrimSuffix(script, ".json"), func(t *testing.T) {
			t.Parallel()
			before := specRun(t, dir, script, false)
			after := specRun(t, dir, script, true)
			if len(before) != len(after) {
				t.Fatalf("%d commands ran as written, %d rewritten", len(before), len(after))
			}
			for i := range before {
				if strings.HasSuffix(before[i], " module: ok") {
					modules.Add(1)
				}
				if before[i] != after[i] {
					t.Errorf("%s\n as written: %s\n rewritten:  %s", script, before[i], after[i])
				}
			}
		})
	}
}
