package dispatch

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lkedge/lkedge/host/deliver"
	"github.com/lkedge/lkedge/host/event"
	"github.com/lkedge/lkedge/host/plugin/plugintest"
	"github.com/lkedge/lkedge/host/store"
)

// outbox records what would be stored.
type outbox struct {
	mu sync.Mutex
	ds []deliver.Delivery
}

func (o *outbox) Enqueue(_ context.Context, ds []deliver.Delivery) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.ds = append(o.ds, ds...)
	return nil
}

func (o *outbox) take() []deliver.Delivery {
	o.mu.Lock()
	defer o.mu.Unlock()
	ds := o.ds
	o.ds = nil
	return ds
}

func loadEvent(t *testing.T, name string, owned bool) *event.Event {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("../../testdata/events", name+".webhook.json"))
	if err != nil {
		t.Fatal(err)
	}
	ev, err := event.FromWebhook(b, time.UnixMilli(1745318190000))
	if err != nil {
		t.Fatal(err)
	}
	ev.Meet = &event.Meet{Owned: owned, RoomID: "room-123"}
	return ev
}

// setup writes the test plugins and plugins.yaml into a folder.
func setup(t *testing.T, yaml string) string {
	t.Helper()
	dir := t.TempDir()
	for name, src := range map[string]string{"typical.wasm": "typical", "misbehave.wasm": "misbehave"} {
		if err := os.WriteFile(filepath.Join(dir, name), plugintest.Build(t, "../plugin/testdata/plugins/"+src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, filepath.Join(dir, "plugins.yaml"), yaml)
	return dir
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// cacheDir is shared by the tests so that each module compiles once.
var cacheDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lkedge-dispatch-cache")
	if err != nil {
		panic(err)
	}
	cacheDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func newDispatcher(t *testing.T, dir string, out Outbox) *Dispatcher {
	t.Helper()
	return newDispatcherLog(t, dir, out, slog.New(slog.DiscardHandler))
}

// testOptions are the options of the tests' dispatchers: files in dir,
// quick polls and retries.
func testOptions(dir string, out Outbox, log *slog.Logger) Options {
	return Options{Path: filepath.Join(dir, "plugins.yaml"), Tasks: filepath.Join(dir, "tasks.db"), Outbox: out, Poll: 20 * time.Millisecond,
		CacheDir: cacheDir, Logger: log, HoldBackoff: 10 * time.Millisecond}
}

// handle hands events to d as the pipeline does and waits until the
// plugins' calls on them are made.
func handle(t *testing.T, d *Dispatcher, evs ...*event.Event) error {
	t.Helper()
	if err := d.Handle(context.Background(), evs, slog.New(slog.DiscardHandler)); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return d.WaitIdle(ctx)
}

func TestHandleRoutesEventsToSubscribers(t *testing.T) {
	dir := setup(t, `plugins:
  - name: meet-egress
    wasm: typical.wasm
    events: [egress_updated]
    config: {url: "https://hooks.example.com/a"}
    secrets: {key: {env: SOME_KEY}}
    allow: ["config:url"]
    delivery: {attempts: 3, backoff: 1s}
  - name: everything
    wasm: typical.wasm
    events: ["*"]
    rooms: all
    config: {url: "https://hooks.example.com/b"}
    secrets: {key: {env: SOME_KEY}}
    allow: ["https://hooks.example.com"]
`)
	out := &outbox{}
	d := newDispatcher(t, dir, out)
	for _, tc := range []struct {
		event  *event.Event
		wantTo []string
	}{
		{loadEvent(t, "egress_updated", true), []string{"https://hooks.example.com/a", "https://hooks.example.com/b"}},
		{loadEvent(t, "egress_updated", false), []string{"https://hooks.example.com/b"}},
		{loadEvent(t, "participant_joined", true), []string{"https://hooks.example.com/b"}},
	} {
		// Each its own event: the calls on an event id already pending
		// are not recorded again.
		tc.event.ID += "-" + tc.event.Type + strconv.FormatBool(tc.event.Meet.Owned)
		if err := handle(t, d, tc.event); err != nil {
			t.Fatal(err)
		}
		ds := out.take()
		var to []string
		for _, x := range ds {
			to = append(to, x.URL)
		}
		slices.Sort(to) // the plugins' calls run side by side
		if strings.Join(to, " ") != strings.Join(tc.wantTo, " ") {
			t.Errorf("%s (owned %v) went to %v, want %v", tc.event.Type, tc.event.Meet.Owned, to, tc.wantTo)
		}
	}
	if err := handle(t, d, loadEvent(t, "egress_updated", true)); err != nil {
		t.Fatal(err)
	}
	ds := out.take()
	i := slices.IndexFunc(ds, func(x deliver.Delivery) bool { return x.Plugin == "meet-egress" })
	if i < 0 {
		t.Fatalf("no request of meet-egress in %+v", ds)
	}
	x := ds[i]
	want := deliver.Delivery{ID: "EV_x1/meet-egress/0", Plugin: "meet-egress", EventID: "EV_x1", Resource: "room:room-123",
		Method: "POST", URL: "https://hooks.example.com/a", IdempotencyKey: "EV_x1/meet-egress/0"}
	if x.ID != want.ID || x.Plugin != want.Plugin || x.EventID != want.EventID || x.Resource != want.Resource ||
		x.Method != want.Method || x.IdempotencyKey != want.IdempotencyKey {
		t.Errorf("delivery = %+v, want %+v", x, want)
	}
	if x.Sign == nil || x.Sign.Scheme != deliver.SchemeHMACSHA256Hex || x.Sign.Secret != "key" {
		t.Errorf("sign = %+v", x.Sign)
	}
	if x.Policy.Attempts != 3 || x.Policy.Backoff != time.Second || strings.Join(x.Policy.Allow, ",") != "https://hooks.example.com" {
		t.Errorf("policy = %+v", x.Policy)
	}
}

func TestFailurePolicy(t *testing.T) {
	for _, tc := range []struct {
		failure, wantLog, wantOutcome string
		wantFailed                    float64
	}{
		{"skip", "plugin failed; event skipped for it (failure: skip)", "skipped", 0},
		{"hold", "plugin failed for the last time; its call on this event is kept as a failed task (failure: hold)", "failed", 1},
	} {
		t.Run(tc.failure, func(t *testing.T) {
			dir := setup(t, `plugins:
  - name: broken
    wasm: misbehave.wasm
    events: ["*"]
    config: {mode: panic}
    failure: `+tc.failure+`
  - name: fine
    wasm: typical.wasm
    events: ["*"]
    config: {url: "https://hooks.example.com/a"}
    secrets: {key: {env: SOME_KEY}}
    allow: ["config:url"]
`)
			out := &outbox{}
			var logs syncBuffer
			opts := testOptions(dir, out, slog.New(slog.NewTextHandler(&logs, nil)))
			opts.HoldAttempts = 3
			d := newDispatcherOpts(t, opts)
			if err := handle(t, d, loadEvent(t, "egress_updated", true)); err != nil {
				t.Fatal(err)
			}
			if ds := out.take(); len(ds) != 1 || ds[0].Plugin != "fine" {
				t.Errorf("stored %+v, want the fine plugin's request", ds)
			}
			line := logLine(logs.String(), tc.wantLog)
			if line == "" || !strings.Contains(line, "plugin=broken") || !strings.Contains(line, "event_id=EV_x1") || !strings.Contains(line, "panic: boom from plugin") {
				t.Errorf("want a line %q naming the plugin, the event and the panic; log:\n%s", tc.wantLog, logs.String())
			}
			if got := testutil.ToFloat64(d.m.tasks.WithLabelValues("broken", tc.wantOutcome)); got != 1 {
				t.Errorf("lkedge_plugin_tasks_total{plugin=broken,outcome=%s} = %v, want 1", tc.wantOutcome, got)
			}
			if got := testutil.ToFloat64(d.m.failedTasks); got != tc.wantFailed {
				t.Errorf("lkedge_plugin_tasks_failed = %v, want %v", got, tc.wantFailed)
			}
			if tc.failure == "hold" {
				if got := strings.Count(logs.String(), "its call on this event is tried again"); got != 2 {
					t.Errorf("%d retries logged, want 2 (3 attempts)", got)
				}
			}
		})
	}
}

// logLine returns the first line of logs that contains want.
func logLine(logs, want string) string {
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, want) {
			return l
		}
	}
	return ""
}

// TestReload edits plugins.yaml and the module under a running
// dispatcher: good edits take effect without a restart, bad ones leave the
// running version in place.
func TestReload(t *testing.T) {
	conf := func(url string) string {
		return `plugins:
  - name: hook
    wasm: typical.wasm
    events: ["*"]
    config: {url: "` + url + `"}
    secrets: {key: {env: SOME_KEY}}
    allow: ["config:url"]
`
	}
	dir := setup(t, conf("https://a.example.com/hook"))
	out := &outbox{}
	d := newDispatcher(t, dir, out)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.Run(ctx)
	n := 0
	sendsTo := func() string {
		n++
		ev := loadEvent(t, "egress_updated", true)
		ev.ID = fmt.Sprintf("EV_%d", n)
		if err := handle(t, d, ev); err != nil {
			return "error: " + err.Error()
		}
		ds := out.take()
		if len(ds) == 0 {
			return "nothing"
		}
		return ds[0].URL
	}
	waitFor := func(want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for got := sendsTo(); got != want; got = sendsTo() {
			if time.Now().After(deadline) {
				t.Fatalf("sends to %q, want %q", got, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("https://a.example.com/hook")

	writeFile(t, filepath.Join(dir, "plugins.yaml"), conf("https://b.example.com/hook"))
	waitFor("https://b.example.com/hook")

	// A module that does not compile keeps the running version.
	typical, _ := os.ReadFile(filepath.Join(dir, "typical.wasm"))
	writeFile(t, filepath.Join(dir, "typical.wasm"), "not wasm")
	writeFile(t, filepath.Join(dir, "plugins.yaml"), conf("https://c.example.com/hook"))
	time.Sleep(200 * time.Millisecond)
	waitFor("https://b.example.com/hook")

	// Broken YAML too.
	writeFile(t, filepath.Join(dir, "plugins.yaml"), "plugins: [")
	time.Sleep(200 * time.Millisecond)
	waitFor("https://b.example.com/hook")

	// Fixed again: the new module and config take over.
	writeFile(t, filepath.Join(dir, "typical.wasm"), string(typical))
	writeFile(t, filepath.Join(dir, "plugins.yaml"), conf("https://c.example.com/hook"))
	waitFor("https://c.example.com/hook")

	writeFile(t, filepath.Join(dir, "plugins.yaml"), "plugins: []\n")
	waitFor("nothing")
}

func TestStartupRefusesBadPlugins(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"pin mismatch", `plugins:
  - name: pinned
    wasm: typical.wasm
    sha256: "0000000000000000000000000000000000000000000000000000000000000000"
    events: ["*"]
`, "plugin pinned: sha256"},
		{"missing module", `plugins:
  - name: gone
    wasm: nowhere.wasm
    events: ["*"]
`, "plugin gone: wasm"},
		{"secret in clear", `plugins:
  - name: leaky
    wasm: typical.wasm
    events: ["*"]
    secrets: {key: "s3cr3t"}
`, "plugin leaky"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := setup(t, tc.yaml)
			_, err := New(context.Background(), testOptions(dir, &outbox{}, slog.New(slog.DiscardHandler)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New = %v, want an error with %q", err, tc.want)
			}
		})
	}
}

// TestConfigFromMeetPreferences: a plugin's url and on/off can come from
// OpenVidu Meet's global-preferences.json in the store, re-read while
// running; the URL found there is allowed, restricted to public addresses.
func TestConfigFromMeetPreferences(t *testing.T) {
	dir := setup(t, `plugins:
  - name: meet
    wasm: typical.wasm
    events: ["*"]
    config:
      url: {store: global-preferences.json, field: webhooksPreferences.url, default: "https://fallback.example.com/hook"}
    secrets: {key: {env: SOME_KEY}}
    allow: ["config:url"]
`)
	st, err := store.NewFile(filepath.Join(dir, "store"), "openvidu")
	if err != nil {
		t.Fatal(err)
	}
	out := &outbox{}
	opts := testOptions(dir, out, slog.New(slog.DiscardHandler))
	opts.Store, opts.StorePrefix, opts.StoreTTL = st, "openvidu-meet/", 10*time.Millisecond
	d := newDispatcherOpts(t, opts)
	setPrefs := func(url string) {
		body := `{"webhooksPreferences":{"enabled":true,"url":"` + url + `"}}`
		if _, err := st.Put(context.Background(), "openvidu-meet/global-preferences.json", []byte(body), store.PutOptions{}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond) // past the cache
	}
	n := 0
	sendsTo := func() (string, []string) {
		t.Helper()
		n++
		ev := loadEvent(t, "egress_updated", true)
		ev.ID = fmt.Sprintf("EV_%d", n)
		if err := handle(t, d, ev); err != nil {
			t.Fatal(err)
		}
		ds := out.take()
		if len(ds) != 1 {
			t.Fatalf("%d deliveries", len(ds))
		}
		return ds[0].URL, ds[0].Policy.Allow
	}
	if got, _ := sendsTo(); got != "https://fallback.example.com/hook" {
		t.Errorf("without preferences: sends to %s, want the fallback", got)
	}
	setPrefs("http://localhost:5080/webhook")
	got, allow := sendsTo()
	if got != "http://localhost:5080/webhook" || !slices.Contains(allow, "public:http://localhost:5080") {
		t.Errorf("with preferences: sends to %s allowing %v, want Meet's URL, allowed", got, allow)
	}
	setPrefs("https://changed.example.com/x")
	if got, _ := sendsTo(); got != "https://changed.example.com/x" {
		t.Errorf("after a change: sends to %s", got)
	}
}

// TestRequiresConfig: a plugin whose required config is empty is not
// called at all, and is as soon as the value appears.
func TestRequiresConfig(t *testing.T) {
	dir := setup(t, `plugins:
  - name: hook
    wasm: typical.wasm
    events: ["*"]
    config:
      url: {env: LKEDGE_TEST_HOOK_URL}
    secrets: {key: {env: SOME_KEY}}
    allow: ["config:url"]
    requires: [url]
`)
	out := &outbox{}
	d := newDispatcher(t, dir, out)
	if err := handle(t, d, loadEvent(t, "egress_updated", true)); err != nil {
		t.Fatal(err)
	}
	if ds := out.take(); len(ds) != 0 {
		t.Errorf("an unconfigured plugin asked for %d requests", len(ds))
	}
	if got := testutil.ToFloat64(d.m.calls.WithLabelValues("hook", "ok")); got != 0 {
		t.Errorf("an unconfigured plugin was called %v times", got)
	}

	t.Setenv("LKEDGE_TEST_HOOK_URL", "https://hooks.example.com/x")
	writeFile(t, filepath.Join(dir, "plugins.yaml"), strings.Replace(mustRead(t, filepath.Join(dir, "plugins.yaml")), "requires: [url]", "requires: [url]  # edited", 1))
	if err := d.reload(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if err := handle(t, d, loadEvent(t, "egress_updated", true)); err != nil {
		t.Fatal(err)
	}
	if ds := out.take(); len(ds) != 1 || ds[0].URL != "https://hooks.example.com/x" {
		t.Errorf("configured plugin asked for %+v", ds)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func newDispatcherLog(t *testing.T, dir string, out Outbox, log *slog.Logger) *Dispatcher {
	t.Helper()
	return newDispatcherOpts(t, testOptions(dir, out, log))
}

func newDispatcherOpts(t *testing.T, opts Options) *Dispatcher {
	t.Helper()
	d, err := New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close(context.Background()) })
	return d
}

// TestTruncatedModuleReloadLogsOnce: a module cut short while lkedge runs
// is not loaded; the reload says so in one line, which names the plugin,
// and the running version goes on.
func TestTruncatedModuleReloadLogsOnce(t *testing.T) {
	dir := setup(t, `plugins:
  - name: hook
    wasm: typical.wasm
    events: ["*"]
`)
	var logs bytes.Buffer
	opts := testOptions(dir, &outbox{}, slog.New(slog.NewJSONHandler(&logs, nil)))
	opts.Poll = time.Hour
	d, err := New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close(context.Background())
	wasm := filepath.Join(dir, "typical.wasm")
	b := []byte(mustRead(t, wasm))
	writeFile(t, wasm, string(b[:len(b)/2]))
	logs.Reset()
	if err := d.reload(context.Background(), false); err != nil {
		t.Fatalf("reload = %v; the partial reload is logged, not returned", err)
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], `"msg":"plugins reloaded in part`) || !strings.Contains(lines[0], "plugin hook keeps its running version") {
		t.Fatalf("reload logged %d lines, want one naming the plugin that kept its version:\n%s", len(lines), logs.String())
	}
	if names := d.Loaded(); !slices.Equal(names, []string{"hook"}) {
		t.Fatalf("loaded after the failed reload = %v, want [hook]", names)
	}
}

// TestOffUntilConfiguredCostsNothing: a plugin whose required keys have no
// value, or "false", is neither compiled nor instantiated; once its
// store-backed on/off key turns on it is compiled at the next poll and
// called.
func TestOffUntilConfiguredCostsNothing(t *testing.T) {
	dir := setup(t, `plugins:
  - name: meet
    wasm: typical.wasm
    events: ["*"]
    config:
      url: "https://hooks.example.com/meet"
      enabled: {store: global-preferences.json, field: webhooksPreferences.enabled, default: "false"}
    secrets: {key: {env: SOME_KEY}}
    allow: ["config:url"]
    requires: [enabled]
  - name: unset
    wasm: typical.wasm
    events: ["*"]
    rooms: all
    config: {url: {env: LKEDGE_TEST_UNSET_URL}}
    allow: ["config:url"]
    requires: [url]
`)
	st, err := store.NewFile(filepath.Join(dir, "store"), "openvidu")
	if err != nil {
		t.Fatal(err)
	}
	out := &outbox{}
	opts := testOptions(dir, out, slog.New(slog.DiscardHandler))
	opts.Store, opts.StorePrefix, opts.StoreTTL = st, "openvidu-meet/", 10*time.Millisecond
	d := newDispatcherOpts(t, opts)
	if got := d.Loaded(); len(got) != 0 {
		t.Fatalf("compiled %v; no plugin is configured", got)
	}
	if got := d.Dormant(); !slices.Equal(got, []string{"meet", "unset"}) {
		t.Fatalf("off until configured: %v, want meet and unset", got)
	}
	for _, l := range d.current.Load().plugins {
		if l.p != nil {
			t.Errorf("plugin %s has a compiled module and %d instances", l.conf.Name, l.p.Instances())
		}
	}
	if err := handle(t, d, loadEvent(t, "egress_updated", true)); err != nil {
		t.Fatal(err)
	}
	if ds := out.take(); len(ds) != 0 {
		t.Errorf("plugins off until configured asked for %d requests", len(ds))
	}

	body := `{"webhooksPreferences":{"enabled":true}}`
	if _, err := st.Put(context.Background(), "openvidu-meet/global-preferences.json", []byte(body), store.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // past the store cache
	if err := d.reload(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if got := d.Loaded(); !slices.Equal(got, []string{"meet"}) {
		t.Fatalf("after Meet's webhooks were turned on, compiled %v, want meet", got)
	}
	if err := handle(t, d, loadEvent(t, "egress_updated", true)); err != nil {
		t.Fatal(err)
	}
	if ds := out.take(); len(ds) != 1 || ds[0].URL != "https://hooks.example.com/meet" {
		t.Errorf("turned on, the plugin asked for %+v", ds)
	}
}

// TestReloadLoadsTheLastEdit: plugins.yaml replaced again and again, a
// broken version before each good one, while the dispatcher polls every
// millisecond. A poll that read one version and stamped the next kept the
// running version until the next edit (TestReload hit it under load); the
// last edit must always be the one running. The plugins are off until
// configured, so a reload compiles nothing.
func TestReloadLoadsTheLastEdit(t *testing.T) {
	conf := func(name string) string {
		return `plugins:
  - name: ` + name + `
    wasm: typical.wasm
    events: ["*"]
    config: {url: {env: LKEDGE_TEST_UNSET_URL}}
    requires: [url]
`
	}
	dir := setup(t, conf("v0"))
	opts := testOptions(dir, &outbox{}, slog.New(slog.DiscardHandler))
	opts.Poll = time.Millisecond
	d := newDispatcherOpts(t, opts)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.Run(ctx)
	for i := 1; i <= 300; i++ {
		writeFile(t, filepath.Join(dir, "plugins.yaml"), "plugins: [")
		time.Sleep(time.Duration(i%3) * time.Millisecond)
		want := fmt.Sprintf("v%d", i)
		writeFile(t, filepath.Join(dir, "plugins.yaml"), conf(want))
		deadline := time.Now().Add(2 * time.Second)
		for got := d.Dormant(); len(got) != 1 || got[0] != want; got = d.Dormant() {
			if time.Now().After(deadline) {
				t.Fatalf("edit %d: running %v, want [%s]", i, got, want)
			}
			time.Sleep(time.Millisecond)
		}
	}
}
