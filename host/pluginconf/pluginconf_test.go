package pluginconf

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// env is a fake environment for Parse: the tests must not depend on, or
// change, the real one.
func env(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := vars[k]
		return v, ok
	}
}

const dir = "/etc/lkedge"

// fullYAML sets every field the format has, so that a field Parse forgets
// to copy, default or resolve shows up as a difference below.
const fullYAML = `
plugins:
  - name: notifier-2
    wasm: plugins/notifier.wasm
    sha256: 9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08
    events: [room_started, room_finished]
    rooms: all
    config:
      greeting: hello
      port: 8080
      url: {env: HOOK_URL}
      envWins: {env: HOOK_URL, default: "https://unused.example.com"}
      unsetDefault: {env: NOT_SET, default: fallback}
      emptyDefault: {env: EMPTY, default: fallback2}
      unsetNoDefault: {env: NOT_SET}
      emptyNoDefault: {env: EMPTY}
    secrets:
      key: {env: HOOK_KEY}
      relative: {file: secrets/hook.key}
      absolute: {file: /run/secrets/hook.key}
    allow:
      - https://api.example.com
      - config:url
      - config:unsetNoDefault
      - config:emptyNoDefault
    limits:
      memory: 64MiB
      timeout: 2s
      instances: 3
      maxActions: 5
      maxActionBytes: 2048
    failure: hold
    delivery:
      attempts: 4
      backoff: 100ms
      maxBackoff: 2s
      schedule: [1s, 2s, 3s]
      timeout: 750ms
  - name: minimal
    wasm: /opt/minimal.wasm
    events: ["*"]
`

func TestParseFull(t *testing.T) {
	lookup := env(map[string]string{
		"HOOK_URL": "https://hooks.example.com:8443/path/x?q=1",
		"EMPTY":    "",
		"HOOK_KEY": "must-not-be-read-by-parse",
	})
	f, err := Parse([]byte(fullYAML), dir, lookup)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if len(f.Plugins) != 2 {
		t.Fatalf("got %d plugins, want 2", len(f.Plugins))
	}

	want := []Plugin{{
		Name: "notifier-2",
		// Relative to the file's folder, so plugins.yaml can be moved
		// with its modules.
		Wasm: "/etc/lkedge/plugins/notifier.wasm",
		// Lower-cased, so that comparing with a computed digest is exact.
		SHA256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		Events: []string{"room_started", "room_finished"},
		Rooms:  RoomsAll,
		Config: map[string]string{
			"greeting": "hello",
			"port":     "8080", // a YAML number is still read as its text
			"url":      "https://hooks.example.com:8443/path/x?q=1",
			"envWins":  "https://hooks.example.com:8443/path/x?q=1",
			// An unset or empty variable falls back to the default, so a
			// blank export cannot wipe a default; without a default the
			// key is absent, not "".
			"unsetDefault": "fallback",
			"emptyDefault": "fallback2",
		},
		Secrets: map[string]SecretRef{
			"key":      {Env: "HOOK_KEY"},
			"relative": {File: "/etc/lkedge/secrets/hook.key"},
			"absolute": {File: "/run/secrets/hook.key"},
		},
		// config:url is reduced to the origin (no path, no query), and
		// config entries whose key has no value allow nothing.
		Allow:    []string{"https://api.example.com", "https://hooks.example.com:8443"},
		Limits:   Limits{Memory: 64 << 20, Timeout: 2 * time.Second, Instances: 3, MaxActions: 5, MaxActionBytes: 2048},
		Failure:  FailureHold,
		Delivery: Delivery{Attempts: 4, Backoff: 100 * time.Millisecond, MaxBackoff: 2 * time.Second, Schedule: []time.Duration{time.Second, 2 * time.Second, 3 * time.Second}, Timeout: 750 * time.Millisecond},
	}, {
		Name:   "minimal",
		Wasm:   "/opt/minimal.wasm", // absolute paths are kept as they are
		Events: []string{"*"},
		// The defaults: Meet's rooms only, and a failing plugin never
		// holds up the events of others.
		Rooms:   RoomsMeet,
		Failure: FailureSkip,
		Config:  map[string]string{},
		Secrets: map[string]SecretRef{},
	}}

	for i, w := range want {
		g := f.Plugins[i]
		// Field by field, so that a failure says which one is wrong.
		fields := []struct {
			name      string
			got, want any
		}{
			{"Name", g.Name, w.Name},
			{"Wasm", g.Wasm, w.Wasm},
			{"SHA256", g.SHA256, w.SHA256},
			{"Events", g.Events, w.Events},
			{"Rooms", g.Rooms, w.Rooms},
			{"Config", g.Config, w.Config},
			{"Secrets", g.Secrets, w.Secrets},
			{"Allow", g.Allow, w.Allow},
			{"Limits", g.Limits, w.Limits},
			{"Failure", g.Failure, w.Failure},
			{"Delivery", g.Delivery, w.Delivery},
		}
		for _, fl := range fields {
			if !reflect.DeepEqual(fl.got, fl.want) {
				t.Errorf("plugin %s: %s = %#v, want %#v", w.Name, fl.name, fl.got, fl.want)
			}
		}
	}
}

// TestParseEmpty: a file without plugins is valid (lkedge then runs
// none), whatever form the emptiness takes.
func TestParseEmpty(t *testing.T) {
	for _, data := range []string{"", "\n", "# no plugins yet\n", "plugins:\n", "plugins: []\n"} {
		f, err := Parse([]byte(data), dir, env(nil))
		if err != nil {
			t.Errorf("Parse(%q): %v", data, err)
			continue
		}
		if len(f.Plugins) != 0 {
			t.Errorf("Parse(%q) = %d plugins, want none", data, len(f.Plugins))
		}
	}
}

// TestParseMemory covers the size syntax of limits.memory, around the 4MiB
// floor below which a Go plugin cannot even start.
func TestParseMemory(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64 // 0: refused
	}{
		{"64MiB", 64 << 20},
		{"1GiB", 1 << 30},
		{"4MiB", 4 << 20},
		{"4096KiB", 4 << 20},
		{"4194304", 4 << 20},
		{"4194304B", 4 << 20},
		{"8 MiB", 8 << 20},
		{"4194303", 0},
		{"4095KiB", 0},
		{"3MiB", 0},
		{"64MB", 0},
		{"64 mib", 0},
		{"-64MiB", 0},
		{"lots", 0},
	} {
		t.Run(tc.in, func(t *testing.T) {
			data := "plugins:\n  - name: p\n    wasm: p.wasm\n    events: ['*']\n    limits: {memory: '" + tc.in + "'}\n"
			f, err := Parse([]byte(data), dir, env(nil))
			if tc.want == 0 {
				if err == nil {
					t.Fatalf("memory %q accepted as %d bytes", tc.in, f.Plugins[0].Limits.Memory)
				}
				if !strings.Contains(err.Error(), "limits.memory") {
					t.Errorf("error does not name limits.memory: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := f.Plugins[0].Limits.Memory; got != tc.want {
				t.Errorf("memory %q = %d, want %d", tc.in, got, tc.want)
			}
		})
	}
}

// plugin returns a plugins.yaml with one valid plugin p plus extra lines
// (indented as its fields), so each error case below differs from a
// valid file by the one mistake it is about.
func plugin(extra ...string) string {
	s := "plugins:\n  - name: p\n    wasm: p.wasm\n    events: ['*']\n"
	for _, e := range extra {
		s += "    " + e + "\n"
	}
	return s
}

func TestParseErrors(t *testing.T) {
	lookup := env(map[string]string{"BAD_URL": "hooks.example.com/x", "FTP_URL": "ftp://files.example.com"})
	for _, tc := range []struct {
		name string
		yaml string
		want []string // substrings of the error: the plugin, the field, the detail
	}{
		{"bad name", "plugins:\n  - name: Bad_Name\n    wasm: p.wasm\n    events: ['*']\n", []string{"plugin Bad_Name", "name:"}},
		{"missing name", "plugins:\n  - wasm: p.wasm\n    events: ['*']\n", []string{"plugin #1", "name:"}},
		{"missing wasm", "plugins:\n  - name: p\n    events: ['*']\n", []string{"plugin p", "wasm:"}},
		{"short sha256", plugin("sha256: abc123"), []string{"plugin p", "sha256:", "abc123"}},
		{"non-hex sha256", plugin("sha256: " + strings.Repeat("zz", 32)), []string{"plugin p", "sha256:"}},
		{"no events", "plugins:\n  - name: p\n    wasm: p.wasm\n", []string{"plugin p", "events:"}},
		{"empty event", "plugins:\n  - name: p\n    wasm: p.wasm\n    events: ['']\n", []string{"plugin p", "events:"}},
		{"bad rooms", plugin("rooms: some"), []string{"plugin p", "rooms:", "some"}},
		{"bad failure", plugin("failure: retry"), []string{"plugin p", "failure:", "retry"}},
		// A secret's value must never sit in plugins.yaml, and must not be
		// echoed in the error either (errors end up in logs).
		{"plain secret", plugin("secrets: {key: hunter2}"), []string{"plugin p", "secret", "never its value"}},
		{"secret with env and file", plugin("secrets: {key: {env: K, file: k.txt}}"), []string{"plugin p", "secret", "exactly one of env or file"}},
		{"secret with neither", plugin("secrets: {key: {}}"), []string{"plugin p", "secret", "exactly one of env or file"}},
		{"config value without env", plugin("config: {k: {default: v}}"), []string{"plugin p", "config value"}},
		// Typos must not fall back to defaults silently.
		{"unknown key event", "plugins:\n  - name: p\n    wasm: p.wasm\n    event: ['*']\n", []string{"line 4: plugin p: event: unknown field"}},
		{"unknown key limts", plugin("limts: {memory: 64MiB}"), []string{"line 5: plugin p: limts: unknown field"}},
		{"unknown nested key", plugin("limits: {memroy: 64MiB}"), []string{"line 5: plugin p: limits.memroy: unknown field"}},
		{"unknown top-level key", "plugin:\n  - name: p\n", []string{"line 1: unknown field plugin"}},
		{"invalid YAML", "plugins: [", []string{"invalid YAML"}},
		{"unknown event", "plugins:\n  - name: p\n    wasm: p.wasm\n    events: [egress_ended, egress_endd]\n", []string{"line 4: plugin p: events:", `"egress_endd" is not an event`}},
		{"number expected", plugin("limits: {instances: many}"), []string{`line 5: plugin p: limits.instances: "many" is not a whole number`}},
		{"list expected", plugin("allow: {x: y}"), []string{"line 5: plugin p: allow: a mapping is not a list"}},
		{"bad timeout", plugin("limits: {timeout: 2 seconds}"), []string{"plugin p", "limits.timeout", "2 seconds"}},
		{"zero timeout", plugin("limits: {timeout: 0s}"), []string{"plugin p", "limits.timeout"}},
		{"negative backoff", plugin("delivery: {backoff: -1s}"), []string{"plugin p", "delivery.backoff"}},
		{"bad maxBackoff", plugin("delivery: {maxBackoff: soon}"), []string{"plugin p", "delivery.maxBackoff"}},
		{"bad delivery timeout", plugin("delivery: {timeout: 5}"), []string{"plugin p", "delivery.timeout"}},
		{"bad schedule entry", plugin("delivery: {schedule: [1s, later]}"), []string{"plugin p", "delivery.schedule[1]", "later"}},
		{"memory below 4MiB", plugin("limits: {memory: 2MiB}"), []string{"plugin p", "limits.memory", "4MiB"}},
		{"negative instances", plugin("limits: {instances: -1}"), []string{"plugin p", "limits:"}},
		{"negative attempts", plugin("delivery: {attempts: -1}"), []string{"plugin p", "delivery.attempts"}},
		{"attempts disagree with schedule", plugin("delivery: {attempts: 3, schedule: [1s, 2s, 3s]}"), []string{"plugin p", "delivery.attempts", "3 waits"}},
		{"duplicate name", plugin() + "  - name: p\n    wasm: q.wasm\n    events: ['*']\n", []string{"plugin p", "name used twice"}},
		{"bad allow scheme", plugin("allow: ['ftp://x']"), []string{"plugin p", "allow:", "ftp://x"}},
		{"allow with a path", plugin("allow: ['https://x.example.com/hook']"), []string{"plugin p", "allow:"}},
		{"config allow not a URL", plugin("config: {url: {env: BAD_URL}}", "allow: ['config:url']"), []string{"plugin p", "allow: config:url", "hooks.example.com/x"}},
		{"config allow plain not a URL", plugin("config: {url: 'not a url'}", "allow: ['config:url']"), []string{"plugin p", "allow: config:url"}},
		{"config allow bad scheme", plugin("config: {url: {env: FTP_URL}}", "allow: ['config:url']"), []string{"plugin p", "allow:", "ftp://files.example.com"}},
		// The restricted forms are lkedge's own, for store values: an
		// operator writing one would think it does something it does not.
		{"restricted entry written by hand", plugin("allow: ['public:https://x.example.com']"), []string{"plugin p", "allow:", "public:https://x.example.com", "made by lkedge"}},
		{"private entry written by hand", plugin("allow: ['private:http://10.0.0.5']"), []string{"plugin p", "allow:", "private:http://10.0.0.5"}},
		{"allowPrivate of a key not allowed", plugin("config: {url: {store: prefs.json, field: url}}", "allowPrivate: [url]"), []string{"plugin p", "allowPrivate:", `"url"`, "config:url"}},
		{"allowPrivate of an operator value", plugin("config: {url: {env: FTP_URL}}", "allow: ['https://x.example.com']", "allowPrivate: [url]"), []string{"plugin p", "allowPrivate:", `"url"`}},
		{"allowPrivate of an unknown key", plugin("allowPrivate: [nope]"), []string{"plugin p", "allowPrivate:", `"nope"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse([]byte(tc.yaml), dir, lookup)
			if err == nil {
				t.Fatalf("accepted: %+v", f.Plugins)
			}
			// A broken file gives no plugins at all: running half a
			// configuration would be worse than refusing it.
			if f != nil {
				t.Errorf("a File came with the error: %+v", f)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error echoes the secret: %v", err)
			}
		})
	}
}

// TestParseReportsAll: one error per broken plugin, so a file is fixed in
// one round, not one mistake at a time; including mistakes that the YAML
// decoder itself finds (unknown keys, clear secrets).
func TestParseReportsAll(t *testing.T) {
	data := `
plugins:
  - name: a
    wasm: a.wasm
    events: ['*']
    rooms: nowhere
  - name: good
    wasm: good.wasm
    events: ['*']
  - name: b
    wasm: b.wasm
    events: ['*']
    limts: {memory: 64MiB}
  - name: c
    wasm: c.wasm
    events: ['*']
    secrets: {key: hunter2}
  - name: d
    wasm: d.wasm
    events: ['*']
    delivery: {backoff: never}
  - name: good
    wasm: again.wasm
    events: ['*']
`
	f, err := Parse([]byte(data), dir, env(nil))
	if err == nil {
		t.Fatalf("accepted: %+v", f.Plugins)
	}
	msg := err.Error()
	for _, w := range []string{
		"plugin a: rooms:",
		"plugin b",
		"line 13: plugin b: limts: unknown field",
		"plugin c", "never its value",
		"plugin d: delivery.backoff",
		"plugin good: name used twice",
	} {
		if !strings.Contains(msg, w) {
			t.Errorf("error does not report %q:\n%s", w, msg)
		}
	}
	if n := strings.Count(msg, "plugin "); n != 5 {
		t.Errorf("%d plugin errors, want 5:\n%s", n, msg)
	}
}

func TestLoad(t *testing.T) {
	d := t.TempDir()
	path := filepath.Join(d, "plugins.yaml")
	if err := os.WriteFile(path, []byte(plugin()), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	// Load resolves against the file's own folder, not the working one.
	if want := filepath.Join(d, "p.wasm"); f.Plugins[0].Wasm != want {
		t.Errorf("Wasm = %q, want %q", f.Plugins[0].Wasm, want)
	}

	if err := os.WriteFile(path, []byte(plugin("rooms: x")), 0o600); err != nil {
		t.Fatal(err)
	}
	// The error names the file, so the operator knows which one to fix.
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "plugin p: rooms") {
		t.Errorf("Load(broken) error = %v, want one naming %s and the plugin", err, path)
	}
	if _, err := Load(filepath.Join(d, "missing.yaml")); err == nil {
		t.Error("Load(missing file) succeeded")
	}
}

func TestSecretValue(t *testing.T) {
	const (
		set   = "LKEDGE_TEST_SECRET_SET"
		empty = "LKEDGE_TEST_SECRET_EMPTY"
		unset = "LKEDGE_TEST_SECRET_UNSET"
	)
	t.Setenv(set, "s3cret")
	t.Setenv(empty, "")
	t.Setenv(unset, "")
	os.Unsetenv(unset) // t.Setenv restores the original state afterwards

	d := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(d, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name    string
		ref     SecretRef
		want    string
		wantErr string
	}{
		{"env set", SecretRef{Env: set}, "s3cret", ""},
		// An empty secret would sign with an empty key: refuse it like
		// a missing one.
		{"env empty", SecretRef{Env: empty}, "", empty},
		{"env unset", SecretRef{Env: unset}, "", unset},
		// Files written by editors or `echo` end with a newline that is
		// not part of the secret.
		{"file with newline", SecretRef{File: file("lf", "s3cret\n")}, "s3cret", ""},
		{"file with CRLF", SecretRef{File: file("crlf", "s3cret\r\n")}, "s3cret", ""},
		{"file without newline", SecretRef{File: file("bare", "s3cret")}, "s3cret", ""},
		// Only line ends are trimmed: spaces and inner newlines may be
		// part of a secret.
		{"file keeps spaces", SecretRef{File: file("sp", " s3cret \n\n")}, " s3cret ", ""},
		{"file keeps inner lines", SecretRef{File: file("pem", "a\nb\n")}, "a\nb", ""},
		{"missing file", SecretRef{File: filepath.Join(d, "nope")}, "", "read secret file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.ref.Value()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Value() = %q, %v; want an error containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("Value() = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestSecretValueRereads: the value is read at each call, so a rotated
// secret is used without a reload.
func TestSecretValueRereads(t *testing.T) {
	p := filepath.Join(t.TempDir(), "key")
	ref := SecretRef{File: p}
	for _, v := range []string{"old", "new"} {
		if err := os.WriteFile(p, []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if got, err := ref.Value(); err != nil || string(got) != v {
			t.Errorf("Value() = %q, %v; want %q", got, err, v)
		}
	}
}

func TestReceives(t *testing.T) {
	named := []string{"room_started", "room_finished"}
	all := []string{"*"}
	for _, tc := range []struct {
		rooms     string
		events    []string
		typ       string
		meetOwned bool
		want      bool
	}{
		{RoomsMeet, named, "room_started", true, true},
		{RoomsMeet, named, "room_finished", true, true},
		{RoomsMeet, named, "participant_joined", true, false},
		// rooms: meet keeps a plugin out of rooms Meet does not own, even
		// for events it subscribed to.
		{RoomsMeet, named, "room_started", false, false},
		{RoomsMeet, all, "participant_joined", true, true},
		{RoomsMeet, all, "participant_joined", false, false},
		{RoomsAll, named, "room_started", false, true},
		{RoomsAll, named, "room_started", true, true},
		{RoomsAll, named, "egress_ended", false, false},
		{RoomsAll, all, "egress_ended", false, true},
		// "*" is a wildcard only as a whole entry, not a glob.
		{RoomsAll, []string{"room_*"}, "room_started", true, false},
	} {
		p := &Plugin{Name: "p", Rooms: tc.rooms, Events: tc.events}
		if got := p.Receives(tc.typ, tc.meetOwned); got != tc.want {
			t.Errorf("rooms %s events %v: Receives(%q, meetOwned=%v) = %v, want %v", tc.rooms, tc.events, tc.typ, tc.meetOwned, got, tc.want)
		}
	}
}

// TestParseStoreValues: a config value may come from a JSON object in the
// store, with env and default as the fallback kept in Config, and its
// config:KEY allow entry is resolved while running.
func TestParseStoreValues(t *testing.T) {
	f, err := Parse([]byte(`plugins:
  - name: meet
    wasm: m.wasm
    events: ["*"]
    config:
      url: {store: global-preferences.json, field: webhooksPreferences.url, env: URL_ENV, default: "http://localhost:5080/webhook"}
    allow: ["config:url"]
`), "/p", func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	p := f.Plugins[0]
	if got := p.FromStore["url"]; got != (StoreValue{Key: "global-preferences.json", Field: "webhooksPreferences.url"}) {
		t.Errorf("FromStore = %+v", p.FromStore)
	}
	if p.Config["url"] != "http://localhost:5080/webhook" || !slices.Equal(p.Allow, []string{"http://localhost:5080"}) || !slices.Equal(p.AllowConfig, []string{"url"}) {
		t.Errorf("Config %v, Allow %v, AllowConfig %v", p.Config, p.Allow, p.AllowConfig)
	}
	if len(p.AllowPrivate) != 0 {
		t.Errorf("AllowPrivate = %v without allowPrivate", p.AllowPrivate)
	}
	f, err = Parse([]byte(`plugins:
  - name: meet
    wasm: m.wasm
    events: ["*"]
    config:
      url: {store: global-preferences.json, field: webhooksPreferences.url}
    allow: ["config:url"]
    allowPrivate: [url, url]
`), "/p", func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	if p := f.Plugins[0]; !slices.Equal(p.AllowPrivate, []string{"url"}) || len(p.Allow) != 0 {
		t.Errorf("AllowPrivate %v, Allow %v", p.AllowPrivate, p.Allow)
	}
	for _, bad := range []string{`{store: global-preferences.json}`, `{field: a.b}`} {
		_, err := Parse([]byte("plugins:\n  - name: m\n    wasm: m.wasm\n    events: [\"*\"]\n    config:\n      url: "+bad+"\n"), "/p", func(string) (string, bool) { return "", false })
		if err == nil || !strings.Contains(err.Error(), "plugin m") {
			t.Errorf("%s: error %v, want one naming the plugin", bad, err)
		}
	}
}

// TestParseRequires: requires names config keys, and a key that is not in
// config is an error naming the plugin and the field.
func TestParseRequires(t *testing.T) {
	none := func(string) (string, bool) { return "", false }
	f, err := Parse([]byte("plugins:\n  - name: s\n    wasm: s.wasm\n    events: [\"*\"]\n    config: {url: {env: U}}\n    requires: [url]\n"), "/p", none)
	if err != nil || !slices.Equal(f.Plugins[0].Requires, []string{"url"}) {
		t.Fatalf("Parse = %+v, %v", f, err)
	}
	_, err = Parse([]byte("plugins:\n  - name: s\n    wasm: s.wasm\n    events: [\"*\"]\n    requires: [url]\n"), "/p", none)
	if err == nil || !strings.Contains(err.Error(), `plugin s: requires: "url"`) {
		t.Errorf("error = %v", err)
	}
}

// TestLoadNamesFileLineAndField: every problem of a file is reported, each
// with the file, its line and the field, and without Go type names.
func TestLoadNamesFileLineAndField(t *testing.T) {
	path := filepath.Join(t.TempDir(), "plugins.yaml")
	yml := `plugins:
  - name: a
    wasm: a.wasm
    events: [egress_endd]
    colour: red
    limits: {instances: lots, memroy: 1}
  - name: b
    wasm: b.wasm
    evnts: [room_started]
`
	if err := os.WriteFile(path, []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if err == nil {
		t.Fatal("Load accepted a broken file")
	}
	want := path + `:5: plugin a: colour: unknown field
` + path + `:6: plugin a: limits.memroy: unknown field
` + path + `:6: plugin a: limits.instances: "lots" is not a whole number
` + path + `:9: plugin b: evnts: unknown field
` + path + `:7: plugin b: events: list the event types it receives, or "*"`
	if err.Error() != want {
		t.Fatalf("Load error:\n%s\nwant:\n%s", err, want)
	}
}
