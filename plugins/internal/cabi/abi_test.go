package cabi

import (
	"context"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/lkedge/lkedge/host/plugin"
	"github.com/lkedge/lkedge/plugins/runner"
	"github.com/lkedge/lkedge/sdk/sdktest"
)

// header declares the ABI for the test modules, as a C author would.
const header = `
typedef unsigned int u32;
typedef int i32;
#define HOST(name) __attribute__((import_module("lkedge"), import_name(name)))
#define EXPORT(name) __attribute__((export_name(name)))
HOST("event_read") i32 event_read(char *buf, u32 size);
HOST("config_get") i32 config_get(const char *key, u32 key_len, char *buf, u32 size);
HOST("action_emit") i32 action_emit(const char *action, u32 len);
HOST("action_emit_body") i32 action_emit_body(const char *action, u32 len, const char *body, u32 body_len);
HOST("log") i32 host_log(i32 level, const char *msg, u32 msg_len, const char *attrs, u32 attrs_len);
HOST("fail") i32 host_fail(const char *msg, u32 len);
EXPORT("lkedge_abi_v1") void lkedge_abi_v1(void) {}
`

// number appends v in decimal to b at *at.
const number = `
static void number(char *b, u32 *at, i32 v) {
	char d[12];
	u32 n = 0, u = v < 0 ? -(u32)v : (u32)v;
	do d[n++] = (char)('0' + u % 10); while (u /= 10);
	if (v < 0) b[(*at)++] = '-';
	while (n) b[(*at)++] = d[--n];
	b[(*at)++] = 0;
}
static void text(char *b, u32 *at, const char *s) {
	while (*s) b[(*at)++] = *s++;
	b[(*at)++] = 0;
}
`

// records is a slog handler keeping the records the host logs outside
// calls (an instance's _initialize).
type records struct {
	mu   sync.Mutex
	recs []string
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) WithAttrs(as []slog.Attr) slog.Handler {
	return &withAttrs{r, as}
}
func (r *records) WithGroup(string) slog.Handler { return r }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	return r.add(rec, nil)
}

func (r *records) add(rec slog.Record, as []slog.Attr) error {
	line := rec.Level.String() + " " + rec.Message
	for _, a := range as {
		line += " " + a.String()
	}
	rec.Attrs(func(a slog.Attr) bool { line += " " + a.String(); return true })
	r.mu.Lock()
	r.recs = append(r.recs, line)
	r.mu.Unlock()
	return nil
}

type withAttrs struct {
	r  *records
	as []slog.Attr
}

func (w *withAttrs) Enabled(context.Context, slog.Level) bool { return true }
func (w *withAttrs) WithAttrs(as []slog.Attr) slog.Handler {
	return &withAttrs{w.r, append(append([]slog.Attr(nil), w.as...), as...)}
}
func (w *withAttrs) WithGroup(string) slog.Handler { return w }
func (w *withAttrs) Handle(_ context.Context, rec slog.Record) error {
	return w.r.add(rec, w.as)
}

// TestInitialize: in _initialize, config_get, log and fail work, the event
// and the emit calls answer -1 (no event); a log attribute reaches the
// host's log as plugin.<key>; a trap there refuses the plugin at load.
func TestInitialize(t *testing.T) {
	src := header + number + `
static i32 config, logged, failed, read, emitted_body, emitted;
static char buf[64];
static const char action[] = "{\"type\":\"http\",\"url\":\"https://example.com/\"}";
EXPORT("_initialize") void initialize(void) {
	config = config_get("greeting", 8, buf, sizeof buf);
	if (config_get("trap", 4, buf, sizeof buf) >= 0) __builtin_trap();
	logged = host_log(0, "starting", 8, "phase\0init\0", 11);
	failed = host_fail("dropped", 7);
	read = event_read(buf, sizeof buf);
	emitted_body = action_emit_body(action, sizeof action - 1, "", 0);
	emitted = action_emit(action, sizeof action - 1);
}
EXPORT("lkedge_on_event") i32 on_event(u32 size) {
	char attrs[256];
	u32 at = 0;
	text(attrs, &at, "config_get"); number(attrs, &at, config);
	text(attrs, &at, "log"); number(attrs, &at, logged);
	text(attrs, &at, "fail"); number(attrs, &at, failed);
	text(attrs, &at, "event_read"); number(attrs, &at, read);
	text(attrs, &at, "action_emit_body"); number(attrs, &at, emitted_body);
	text(attrs, &at, "action_emit"); number(attrs, &at, emitted);
	host_log(0, "statuses", 8, attrs, at);
	return 0;
}
`
	wasm := buildC(t, freestanding, src)
	rec := &records{}
	p := load(t, wasm, plugin.Options{Name: "init", Config: map[string]string{"greeting": "hello"}, Logger: slog.New(rec)})
	out, _ := runner.Call(context.Background(), p, []byte(`{"id":"EV_1"}`))
	want := sdktest.Output{Result: sdktest.Result{Logs: []sdktest.Log{{Level: "INFO", Msg: "statuses", Attrs: [][2]string{
		{"config_get", "5"}, {"log", "0"}, {"fail", "0"}, {"event_read", "-1"}, {"action_emit_body", "-1"}, {"action_emit", "-1"},
	}}}}}
	if !reflect.DeepEqual(out, want) {
		t.Errorf("got %+v\nwant %+v", out, want)
	}
	if want := []string{"INFO starting plugin=init plugin.phase=init"}; !reflect.DeepEqual(rec.recs, want) {
		t.Errorf("the host logged %q, want %q", rec.recs, want)
	}

	_, err := plugin.Load(context.Background(), wasm, plugin.Options{Name: "init", Config: map[string]string{"trap": "1"}})
	if err == nil || !strings.Contains(err.Error(), "initialize:") {
		t.Errorf("a trap in _initialize: Load = %v, want an initialize error", err)
	}
}

// TestWasiLibcAndOutput builds a plugin with wasi-libc by docs/abi.md's
// recipe: its constructor runs (in _initialize), and what it prints on
// stdout and stderr reaches the host's log at debug level after a call
// that succeeded, and the error of one that failed.
func TestWasiLibcAndOutput(t *testing.T) {
	src := `
#include <stdio.h>
#include <string.h>
__attribute__((import_module("lkedge"), import_name("event_read"))) int event_read(char *, unsigned);
__attribute__((import_module("lkedge"), import_name("log"))) int host_log(int, const char *, unsigned, const char *, unsigned);
__attribute__((import_module("lkedge"), import_name("fail"))) int host_fail(const char *, unsigned);
__attribute__((export_name("lkedge_abi_v1"))) void lkedge_abi_v1(void) {}
static int n;
__attribute__((constructor)) static void start(void) { n = 41; }
__attribute__((export_name("lkedge_on_event"))) int on_event(unsigned size) {
	static char event[4096], attrs[32];
	if (size >= sizeof event || event_read(event, sizeof event) != (int)size) return 1;
	event[size] = 0;
	printf("hello from libc\n");
	fflush(stdout);
	fprintf(stderr, "and stderr\n");
	int an = snprintf(attrs, sizeof attrs, "n%c%d", 0, ++n);
	host_log(0, "counted", 7, attrs, an + 1);
	if (strstr(event, "\"fail\"")) {
		host_fail("asked to fail", 13);
		return 1;
	}
	return 0;
}
`
	wasm := buildC(t, wasiLibc, src)
	p := load(t, wasm, plugin.Options{Limits: plugin.Limits{Instances: 1}})
	out, _ := runner.Call(context.Background(), p, []byte(`{"id":"EV_1","type":"x"}`))
	want := sdktest.Output{Result: sdktest.Result{Logs: []sdktest.Log{
		{Level: "INFO", Msg: "counted", Attrs: [][2]string{{"n", "42"}}},
		{Level: "DEBUG", Msg: "plugin output", Attrs: [][2]string{{"output", "hello from libc\nand stderr"}}},
	}}}
	if !reflect.DeepEqual(out, want) {
		t.Errorf("got %+v\nwant %+v", out, want)
	}
	out, _ = runner.Call(context.Background(), p, []byte(`{"id":"EV_2","type":"fail"}`))
	if out.Kind != plugin.KindError || out.Error != "asked to fail; stderr: hello from libc\nand stderr" {
		t.Errorf("failed call: %+v", out)
	}
}

// TestOneCallAtATime: however many calls run at once, an instance is in
// at most one of them; the module fails any call that finds another one
// inside it.
func TestOneCallAtATime(t *testing.T) {
	src := header + `
static volatile int busy;
EXPORT("lkedge_on_event") i32 on_event(u32 size) {
	if (busy) {
		host_fail("two calls at once", 17);
		return 1;
	}
	busy = 1;
	for (volatile u32 i = 0; i < 100000; i++) {}
	busy = 0;
	return 0;
}
`
	p := load(t, buildC(t, freestanding, src), plugin.Options{Limits: plugin.Limits{Instances: 2}})
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for range 16 {
		wg.Go(func() {
			for range 4 {
				if out, _ := runner.Call(context.Background(), p, []byte(`{}`)); out.Error != "" {
					errs <- out.Error
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// TestRefusedImports: the imports AssemblyScript's standard library adds
// are refused at load, with the reason.
func TestRefusedImports(t *testing.T) {
	for _, name := range []string{"abort", "trace", "seed"} {
		t.Run(name, func(t *testing.T) {
			src := header + `
__attribute__((import_module("env"), import_name("` + name + `"))) void imported(void);
EXPORT("lkedge_on_event") i32 on_event(u32 size) { imported(); return 0; }
`
			_, err := plugin.Load(context.Background(), buildC(t, freestanding, src), plugin.Options{Name: "as"})
			want := `plugin as: imports from module "env"; plugins may import only "lkedge" and "wasi_snapshot_preview1"`
			if err == nil || err.Error() != want {
				t.Errorf("Load = %v, want %s", err, want)
			}
		})
	}
}

// TestInitialMemory: a module's initial memory counts against
// limits.memory: over it, the module is refused; over three quarters of
// it, every event gets a fresh instance (c-notify's count starts again).
func TestInitialMemory(t *testing.T) {
	wasm := buildC(t, freestanding, notify(t), "-Wl,--initial-memory=4194304")
	if _, err := plugin.Load(context.Background(), wasm, plugin.Options{Limits: plugin.Limits{Memory: 2 << 20}}); err == nil ||
		!strings.Contains(err.Error(), "min 64 pages (4 Mi) over limit of 32 pages (2 Mi)") {
		t.Errorf("4 MiB at start, 2 MiB limit: Load = %v", err)
	}
	for _, tc := range []struct {
		limit  uint64
		counts []string
	}{
		{5 << 20, []string{"1", "1", "1"}},
		{8 << 20, []string{"1", "2", "3"}},
	} {
		p := load(t, wasm, plugin.Options{Limits: plugin.Limits{Memory: tc.limit, Instances: 1}, Config: map[string]string{"url": "https://example.com/"}})
		var counts []string
		for range tc.counts {
			out, _ := runner.Call(context.Background(), p, []byte(`{"id":"EV_1","type":"x"}`))
			if out.Error != "" || len(out.Logs) != 1 {
				t.Fatalf("limit %d MiB: %+v", tc.limit>>20, out)
			}
			counts = append(counts, out.Logs[0].Attrs[1][1])
		}
		if !reflect.DeepEqual(counts, tc.counts) {
			t.Errorf("4 MiB at start, limit %d MiB: counts %v, want %v", tc.limit>>20, counts, tc.counts)
		}
	}
}

// TestExportDynamic: docs/abi.md's other way to export, -Wl,--export-dynamic
// with functions of default visibility, makes a plugin too.
func TestExportDynamic(t *testing.T) {
	src := `
__attribute__((import_module("lkedge"), import_name("log"))) int host_log(int, const char *, unsigned, const char *, unsigned);
#define EXPORTED __attribute__((visibility("default")))
EXPORTED void lkedge_abi_v1(void) {}
EXPORTED int lkedge_on_event(unsigned size) {
	host_log(0, "exported", 8, "", 0);
	return 0;
}
`
	p := load(t, buildC(t, freestanding, src, "-Wl,--export-dynamic"), plugin.Options{})
	out, _ := runner.Call(context.Background(), p, []byte(`{}`))
	if want := (sdktest.Output{Result: sdktest.Result{Logs: []sdktest.Log{{Level: "INFO", Msg: "exported"}}}}); !reflect.DeepEqual(out, want) {
		t.Errorf("got %+v, want %+v", out, want)
	}
}
