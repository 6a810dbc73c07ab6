package main

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/lkedge/lkedge/host/deliver"
	"github.com/lkedge/lkedge/host/egress"
	"github.com/lkedge/lkedge/host/plugin"
	"github.com/lkedge/lkedge/plugins/runner"
	"github.com/lkedge/lkedge/sdk"
	"github.com/lkedge/lkedge/sdk/sdktest"
)

const pluginUsage = `usage:
  lkedge plugin run --event FILE [--config K=V]... [--secret K=V]... [--json] [--send] PLUGIN.wasm
                          run PLUGIN on the event in FILE (- for stdin) and print the
                          requests it asks for; --secret shows their signatures,
                          --send sends them once, --json prints what sdktest reads
  lkedge plugin check PLUGIN.wasm
                          check PLUGIN against this lkedge's ABI; print its ABI
                          version, exports, imports and the limits it gets
  lkedge plugin new NAME  write a working plugin with tests in the folder NAME
`

// sendTimeout bounds each request of plugin run --send.
const sendTimeout = 10 * time.Second

// pluginCmd is `lkedge plugin`: the tools for writing and trying plugins
// without running the service.
func pluginCmd(args []string, stdin io.Reader, out io.Writer) error {
	if len(args) == 0 {
		return errors.New("plugin needs a command: run, check or new\n\n" + strings.TrimSpace(pluginUsage))
	}
	switch args[0] {
	case "run":
		return pluginRun(args[1:], stdin, out)
	case "check":
		return pluginCheck(args[1:], out)
	case "new":
		return pluginNew(args[1:], out)
	case "help", "-h", "-help", "--help":
		_, err := fmt.Fprint(out, pluginUsage)
		return err
	}
	return fmt.Errorf("plugin: unknown command %q\n\n%s", args[0], pluginUsage)
}

// pairs is a repeatable K=V flag.
type pairs map[string]string

func (p pairs) String() string { return fmt.Sprint(map[string]string(p)) }

func (p pairs) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("%q is not KEY=VALUE", s)
	}
	p[k] = v
	return nil
}

// errPluginFailed makes plugin run exit 1 when the plugin's call failed,
// after its output was printed.
var errPluginFailed = errors.New("the plugin failed")

func pluginRun(args []string, stdin io.Reader, out io.Writer) error {
	fs := flag.NewFlagSet("plugin run", flag.ContinueOnError)
	eventFile := fs.String("event", "", "the event JSON (docs/events.md); - reads stdin")
	config, secrets := pairs{}, pairs{}
	fs.Var(config, "config", "a config value the plugin reads, KEY=VALUE (repeatable)")
	fs.Var(secrets, "secret", "a secret value to sign with, NAME=VALUE (repeatable)")
	var allow []string
	fs.Func("allow", "a destination the plugin may reach, as in plugins.yaml's allow: an origin (https://*.example.com) or config:KEY (repeatable; without it, no request may leave)", func(s string) error {
		allow = append(allow, s)
		return nil
	})
	asJSON := fs.Bool("json", false, "print the result as JSON (the form sdktest reads)")
	send := fs.Bool("send", false, "send the requests once, signed with the --secret values, where the allow list and the address policy let them")
	if err := parseFlags(fs, "lkedge plugin run --event FILE [--config K=V]... [--secret K=V]... [--allow ENTRY]... [--json] [--send] PLUGIN.wasm", args); err != nil {
		return err
	}
	if fs.NArg() != 1 || *eventFile == "" {
		return errors.New("plugin run needs --event FILE and exactly one PLUGIN.wasm")
	}
	event, err := readEvent(*eventFile, stdin)
	if err != nil {
		return err
	}
	ctx := context.Background()
	p, err := loadPlugin(ctx, fs.Arg(0), config)
	if err != nil {
		return err
	}
	defer p.Close(ctx)
	entries, err := allowEntries(allow, config)
	if err != nil {
		return err
	}
	res, actions := runner.Call(ctx, p, event)
	refused := make([]error, len(actions))
	for i := range actions {
		refused[i] = destinationCheck(&actions[i], entries)
	}
	if *asJSON {
		enc := json.NewEncoder(out)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return fmt.Errorf("print result: %w", err)
		}
	} else if err := printResult(out, res, actions, refused, secrets); err != nil {
		return err
	}
	if res.Error != "" {
		return fmt.Errorf("%w (%s): %s", errPluginFailed, res.Kind, res.Error)
	}
	if *send {
		return sendActions(ctx, out, actions, refused, entries, secrets)
	}
	return nil
}

// allowEntries turns --allow values into allow-list entries as the service
// does for plugins.yaml: config:KEY stands for the origin of that --config
// value, which the operator sets.
func allowEntries(allow []string, config map[string]string) ([]string, error) {
	var entries []string
	for _, a := range allow {
		key, ok := strings.CutPrefix(a, "config:")
		if !ok {
			entries = append(entries, a)
			continue
		}
		v, set := config[key]
		if !set {
			return nil, fmt.Errorf("--allow %s: no --config %s=URL", a, key)
		}
		u, err := url.Parse(v)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("--allow %s: --config %s=%q is not a URL", a, key, v)
		}
		entries = append(entries, egress.Origin(u))
	}
	if _, err := egress.ParseAllowlist(entries); err != nil {
		return nil, fmt.Errorf("--allow: %w", err)
	}
	return entries, nil
}

// destinationCheck is the service's check of a request at emit time (the
// outbox's own validation, with the allow list); nil means it may go.
func destinationCheck(a *plugin.Action, allow []string) error {
	d := deliver.Delivery{ID: "plugin-run/1", Plugin: "plugin-run", EventID: "plugin-run", Resource: "plugin-run",
		Method: a.Method, URL: a.URL, Header: a.Headers, Body: a.Body, IdempotencyKey: a.IdempotencyKey,
		Policy: deliver.Policy{Allow: allow}}
	if d.IdempotencyKey == "" {
		d.IdempotencyKey = d.ID
	}
	if s := a.Sign; s != nil {
		d.Sign = &deliver.Sign{Scheme: s.Scheme, Secret: s.Secret, Header: s.Header, TimestampHeader: s.TimestampHeader, Template: s.Template, Timestamp: s.Timestamp}
	}
	return deliver.Validate(d)
}

func readEvent(name string, stdin io.Reader) ([]byte, error) {
	var b []byte
	var err error
	if name == "-" {
		b, err = io.ReadAll(stdin)
	} else {
		b, err = os.ReadFile(name)
	}
	if err != nil {
		return nil, fmt.Errorf("read event: %w", err)
	}
	if !json.Valid(b) {
		return nil, fmt.Errorf("event %s is not JSON", name)
	}
	return b, nil
}

// loadPlugin loads the module with the host's default limits; the
// plugin's own log lines outside calls go to stderr.
func loadPlugin(ctx context.Context, file string, config map[string]string) (*plugin.Plugin, error) {
	wasm, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read plugin: %w", err)
	}
	name := strings.TrimSuffix(filepath.Base(file), ".wasm")
	return plugin.Load(ctx, wasm, plugin.Options{
		Name: name, Config: config, Cache: compileCache(),
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
}

// compileCache keeps compiled plugins in the user's cache folder: a Go
// plugin takes a second or more to compile, and sdktest runs plugin run
// once per test case, with the same module each time.
var compileCache = sync.OnceValue(func() wazero.CompilationCache {
	if dir, err := os.UserCacheDir(); err == nil {
		if c, err := wazero.NewCompilationCacheWithDir(filepath.Join(dir, "lkedge", "wazero")); err == nil {
			return c
		}
	}
	return wazero.NewCompilationCache()
})

func printResult(out io.Writer, res sdktest.Output, actions []plugin.Action, refused []error, secrets map[string]string) error {
	var b bytes.Buffer
	for _, l := range res.Logs {
		fmt.Fprintf(&b, "log %s %s", l.Level, l.Msg)
		for _, a := range l.Attrs {
			fmt.Fprintf(&b, " %s=%q", a[0], a[1])
		}
		b.WriteByte('\n')
	}
	switch n := len(actions); n {
	case 0:
		b.WriteString("no requests\n")
	case 1:
		b.WriteString("1 request\n")
	default:
		fmt.Fprintf(&b, "%d requests\n", n)
	}
	for i, a := range actions {
		fmt.Fprintf(&b, "\n#%d %s %s\n", i+1, a.Method, a.URL)
		if refused[i] != nil {
			fmt.Fprintf(&b, "(the service would refuse it: %v)\n", refused[i])
		}
		for _, h := range a.Headers {
			fmt.Fprintf(&b, "%s: %s\n", h[0], h[1])
		}
		if a.IdempotencyKey != "" {
			fmt.Fprintf(&b, "Idempotency-Key: %s\n", a.IdempotencyKey)
		}
		if s := a.Sign; s != nil {
			if v, ok := secrets[s.Secret]; ok {
				h, err := signHeaders(&a, []byte(v), time.Now())
				if err != nil {
					return err
				}
				for _, k := range slices.Sorted(maps.Keys(h)) {
					fmt.Fprintf(&b, "%s: %s\n", k, h.Get(k))
				}
			} else {
				fmt.Fprintf(&b, "(signed %s with secret %q%s; pass --secret %s=VALUE to see the signature)\n",
					s.Scheme, s.Secret, describeSign(s), s.Secret)
			}
		}
		switch {
		case len(a.Body) == 0:
		case utf8.Valid(a.Body):
			fmt.Fprintf(&b, "\n%s\n", a.Body)
		default:
			fmt.Fprintf(&b, "\n(%d bytes of binary body)\n", len(a.Body))
		}
	}
	if res.Error != "" {
		fmt.Fprintf(&b, "\nfailed (%s): %s\n", res.Kind, res.Error)
	}
	_, err := out.Write(b.Bytes())
	return err
}

func describeSign(s *plugin.Sign) string {
	var parts []string
	for _, f := range [][2]string{{"header", s.Header}, {"timestamp header", s.TimestampHeader}, {"template", s.Template}, {"timestamp", s.Timestamp}} {
		if f[1] != "" {
			parts = append(parts, fmt.Sprintf("%s %q", f[0], f[1]))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return ", " + strings.Join(parts, ", ")
}

// signHeaders computes the signature headers the host's deliverer would
// add, with the same code.
func signHeaders(a *plugin.Action, secret []byte, now time.Time) (http.Header, error) {
	h := http.Header{}
	s := a.Sign
	d := &deliver.Delivery{ID: "plugin-run/1", Body: a.Body, IdempotencyKey: a.IdempotencyKey, CreatedAt: now,
		Sign: &deliver.Sign{Scheme: s.Scheme, Secret: s.Secret, Header: s.Header, TimestampHeader: s.TimestampHeader, Template: s.Template, Timestamp: s.Timestamp}}
	if err := deliver.SignRequest(h, d, secret, now); err != nil {
		return nil, fmt.Errorf("sign with %q: %w", s.Secret, err)
	}
	return h, nil
}

// sendActions sends each request once, as the deliverer would (headers in
// order, Idempotency-Key, signature), through an egress client built from
// --allow: the address policy, the dial-time check and the redirect checks
// apply as in the service. A request the service would refuse is not sent.
func sendActions(ctx context.Context, out io.Writer, actions []plugin.Action, refused []error, allow []string, secrets map[string]string) error {
	for i, a := range actions {
		if refused[i] != nil {
			return fmt.Errorf("request #%d is not sent: %w", i+1, refused[i])
		}
		if s := a.Sign; s != nil {
			if _, ok := secrets[s.Secret]; !ok {
				return fmt.Errorf("request #%d is signed with secret %q: pass --secret %s=VALUE", i+1, s.Secret, s.Secret)
			}
		}
	}
	var failed error
	for i, a := range actions {
		status, err := sendOne(ctx, &a, allow, secrets)
		if err != nil {
			failed = errors.Join(failed, fmt.Errorf("request #%d: %w", i+1, err))
			fmt.Fprintf(out, "#%d %s %s: %v\n", i+1, a.Method, a.URL, err)
			continue
		}
		fmt.Fprintf(out, "#%d %s %s: %s\n", i+1, a.Method, a.URL, status)
	}
	return failed
}

func sendOne(ctx context.Context, a *plugin.Action, entries []string, secrets map[string]string) (string, error) {
	allow, err := egress.ParseAllowlist(entries)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, a.Method, a.URL, bytes.NewReader(a.Body))
	if err != nil {
		return "", err
	}
	for _, h := range a.Headers {
		req.Header.Add(h[0], h[1])
	}
	if a.IdempotencyKey != "" {
		req.Header.Set("Idempotency-Key", a.IdempotencyKey)
	}
	if s := a.Sign; s != nil {
		h, err := signHeaders(a, []byte(secrets[s.Secret]), time.Now())
		if err != nil {
			return "", err
		}
		for k, v := range h {
			req.Header[k] = v
		}
	}
	res, err := allow.Client().Do(req)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 1<<20))
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return res.Status, fmt.Errorf("answered %s", res.Status)
	}
	return res.Status, nil
}

func pluginCheck(args []string, out io.Writer) error {
	if isHelp(args) {
		return help(out, "usage: lkedge plugin check PLUGIN.wasm\n\nCheck PLUGIN against this lkedge's ABI; print its ABI version, exports,\nimports and the limits it gets.\n")
	}
	if len(args) != 1 {
		return errors.New("plugin check needs exactly one PLUGIN.wasm")
	}
	ctx := context.Background()
	p, err := loadPlugin(ctx, args[0], nil)
	if err != nil {
		return fmt.Errorf("check: %w", err)
	}
	lim := p.Limits()
	_ = p.Close(ctx)
	// Load checked the module; compiling it once more, untouched by the
	// host's instrumentation, shows it as its author built it.
	wasm, err := os.ReadFile(args[0])
	if err != nil {
		return fmt.Errorf("read plugin: %w", err)
	}
	// The interpreter compiles at once: only the module's shape is wanted.
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer rt.Close(ctx)
	code, err := rt.CompileModule(ctx, wasm)
	if err != nil {
		return fmt.Errorf("check: compile: %w", err)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s: an lkedge plugin, ABI v%d\n\nexports:\n", args[0], plugin.ABIVersion)
	exports := code.ExportedFunctions()
	for _, name := range slices.Sorted(maps.Keys(exports)) {
		fmt.Fprintf(&b, "  %s%s\n", name, signature(exports[name]))
	}
	for name, m := range code.ExportedMemories() {
		limit := "no maximum"
		if max, ok := m.Max(); ok {
			limit = fmt.Sprintf("at most %d", max)
		}
		fmt.Fprintf(&b, "  %s (memory, %d pages of 64 KiB at start, %s)\n", name, m.Min(), limit)
	}
	b.WriteString("\nimports:\n")
	for _, f := range code.ImportedFunctions() {
		mod, name, _ := f.Import()
		fmt.Fprintf(&b, "  %s.%s%s\n", mod, name, signature(f))
	}
	fmt.Fprintf(&b, "\nlimits (the host's defaults; plugins.yaml may change them):\n"+
		"  memory     %d MiB\n  timeout    %s per event\n  instances  %d at once\n  requests   %d per event, at most %d KiB each\n",
		lim.Memory>>20, lim.Timeout, lim.Instances, lim.MaxActions, lim.MaxActionBytes>>10)
	_, err = out.Write(b.Bytes())
	return err
}

func signature(f api.FunctionDefinition) string {
	names := func(ts []api.ValueType) string {
		s := make([]string, len(ts))
		for i, t := range ts {
			s[i] = api.ValueTypeName(t)
		}
		return strings.Join(s, ", ")
	}
	return fmt.Sprintf("(%s) -> (%s)", names(f.ParamTypes()), names(f.ResultTypes()))
}

// validName is what plugin new accepts as a plugin (and module) name.
var validName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)

// sdkDir is where plugin new puts its copy of the SDK, which the plugin's
// go.mod replaces the SDK module with.
const sdkDir = "lkedge-sdk"

func pluginNew(args []string, out io.Writer) error {
	if isHelp(args) {
		return help(out, "usage: lkedge plugin new NAME\n\nWrite a working plugin with tests in the folder NAME.\n")
	}
	if len(args) != 1 {
		return errors.New("plugin new needs exactly one NAME")
	}
	dir := args[0]
	name := filepath.Base(dir)
	if !validName.MatchString(name) {
		return fmt.Errorf("plugin name %q: use lower-case letters, digits, '.', '-' and '_'", name)
	}
	if _, err := os.Stat(dir); err == nil {
		return fmt.Errorf("%s already exists", dir)
	}
	files := map[string]string{}
	tmpls, err := fs.Glob(scaffold, "scaffold/*.tmpl")
	if err != nil {
		return fmt.Errorf("scaffold: %w", err)
	}
	fill := strings.NewReplacer("{{.Name}}", name, "{{.SDK}}", sdkDir)
	for _, t := range tmpls {
		file := strings.TrimSuffix(path.Base(t), ".tmpl")
		b, err := fs.ReadFile(scaffold, t)
		if err != nil {
			return fmt.Errorf("scaffold %s: %w", file, err)
		}
		files[file] = fill.Replace(string(b))
	}
	src := sdk.Source()
	err = fs.WalkDir(src, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(p, "_test.go") {
			return err
		}
		b, err := fs.ReadFile(src, p)
		files[path.Join(sdkDir, p)] = string(b)
		return err
	})
	if err != nil {
		return fmt.Errorf("copy the SDK: %w", err)
	}
	for _, file := range slices.Sorted(maps.Keys(files)) {
		p := filepath.Join(dir, filepath.FromSlash(file))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(files[file]), 0o644); err != nil {
			return err
		}
	}
	_, err = fmt.Fprintf(out, "wrote %s/: a plugin that POSTs a JSON notice when a recording ends.\n"+
		"next: cd %s && go test ./... ; see README.md there and docs/plugins.md\n", dir, dir)
	return err
}

// scaffold is what plugin new writes: each scaffold/NAME.tmpl becomes the
// file NAME, with {{.Name}} and {{.SDK}} replaced. Plain replacement, not
// text/template: see TestNoMethodLookupByName.
//
//go:embed scaffold/*.tmpl
var scaffold embed.FS
