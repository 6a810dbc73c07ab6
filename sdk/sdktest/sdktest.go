//go:build !wasip1

// Package sdktest runs a plugin's handler on an event in a plain go test
// and reports what it asked the host for, so a plugin is tested like any
// Go code:
//
//	res, err := sdktest.Run(handle, sdktest.Event(eventJSON), sdktest.Config{"url": "https://example.com/hook"})
//
// The same test also runs against the compiled plugin: with the
// environment variable LKEDGE_PLUGIN_WASM set to the .wasm file, Run ignores
// the Go handler and has the real host run the module, through
// `lkedge plugin run --json` (the lkedge binary is $LKEDGE_BIN, or lkedge on
// the PATH). Natively, Run applies the host's checks to every request, so a
// request the host would refuse fails the test in both modes.
package sdktest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/lkedge/lkedge/sdk"
	"github.com/lkedge/lkedge/sdk/internal/hostcall"
)

// Environment variables that switch Run to the compiled plugin.
const (
	EnvWasm = "LKEDGE_PLUGIN_WASM"
	EnvBin  = "LKEDGE_BIN"
)

// Option is an input of Run: an Event or a Config.
type Option interface{ apply(*call) }

// Event is the event JSON the handler receives (docs/events.md).
type Event []byte

func (e Event) apply(c *call) { c.event = e }

// Config is the plugin's configuration, as plugins.yaml would set it.
type Config map[string]string

func (cfg Config) apply(c *call) { c.config = cfg }

// Result is what one call of the plugin asked for.
type Result struct {
	Requests []Request `json:"requests"`
	Logs     []Log     `json:"logs"`
}

// Request is one HTTP request the plugin handed to the host, before the
// host signs it (the signature depends on secrets the plugin never sees).
type Request struct {
	Method  string
	URL     string
	Headers [][2]string
	Body    []byte
	// Sign is how the host was asked to sign it, nil for unsigned.
	Sign *sdk.Signature
	// IdempotencyKey is the key the plugin set, "" to let the host derive
	// one from the event id.
	IdempotencyKey string
}

// Header returns the first value of the header name (case-insensitive).
func (r *Request) Header(name string) string {
	for _, h := range r.Headers {
		if strings.EqualFold(h[0], name) {
			return h[1]
		}
	}
	return ""
}

// wireRequest is Request in JSON: the body as text when it is UTF-8, as
// base64 otherwise, so any body survives the trip through plugin run.
type wireRequest struct {
	Method         string         `json:"method"`
	URL            string         `json:"url"`
	Headers        [][2]string    `json:"headers,omitempty"`
	Body           *string        `json:"body,omitempty"`
	BodyBase64     []byte         `json:"bodyBase64,omitempty"`
	Sign           *sdk.Signature `json:"sign,omitempty"`
	IdempotencyKey string         `json:"idempotencyKey,omitempty"`
}

// MarshalJSON writes the form `lkedge plugin run --json` prints.
func (r Request) MarshalJSON() ([]byte, error) {
	w := wireRequest{Method: r.Method, URL: r.URL, Headers: r.Headers, Sign: r.Sign, IdempotencyKey: r.IdempotencyKey}
	switch {
	case len(r.Body) == 0:
	case utf8.Valid(r.Body):
		s := string(r.Body)
		w.Body = &s
	default:
		w.BodyBase64 = r.Body
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // bodies print as they are sent
	if err := enc.Encode(w); err != nil {
		return nil, err
	}
	return bytes.TrimSpace(b.Bytes()), nil
}

// UnmarshalJSON reads what MarshalJSON writes.
func (r *Request) UnmarshalJSON(b []byte) error {
	var w wireRequest
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*r = Request{Method: w.Method, URL: w.URL, Headers: w.Headers, Body: w.BodyBase64, Sign: w.Sign, IdempotencyKey: w.IdempotencyKey}
	if w.Body != nil {
		r.Body = []byte(*w.Body)
	}
	return nil
}

// Log is one line the plugin logged.
type Log struct {
	// Level is slog's name for it: DEBUG, INFO, WARN or ERROR.
	Level string      `json:"level"`
	Msg   string      `json:"msg"`
	Attrs [][2]string `json:"attrs,omitempty"`
}

// Output is what `lkedge plugin run --json` prints: the result, and the
// plugin's error if the call failed.
type Output struct {
	Result
	// Error is the handler's error message, or the host's account of a
	// trap, timeout or refused request.
	Error string `json:"error,omitempty"`
	// Kind is the host's kind of failure (error, trap, timeout, output, ...).
	Kind string `json:"kind,omitempty"`
}

// The host's limits per call (host/plugin's defaults), applied natively too.
const (
	maxRequests     = 16
	maxRequestBytes = 1 << 20
)

// mu serializes native runs: the SDK's host is a package variable.
var mu sync.Mutex

type call struct {
	event  []byte
	config map[string]string
}

// Run runs handler on the event with the config and returns what it asked
// for; the error is the handler's (or, against a .wasm, the plugin's). Run
// is safe to call from parallel tests; native runs take turns.
func Run(handler func(*sdk.Event) error, opts ...Option) (*Result, error) {
	return run(func(raw []byte) error {
		ev, err := sdk.ParseEvent(raw)
		if err != nil {
			return err
		}
		return handler(ev)
	}, opts)
}

// RunLazy is Run for a handler registered with sdk.HandleLazy: it gets the
// event as the plugin does, decoded as far as it asks.
func RunLazy(handler func(*sdk.LazyEvent) error, opts ...Option) (*Result, error) {
	return run(func(raw []byte) error {
		ev, err := sdk.ParseLazy(raw)
		if err != nil {
			return err
		}
		return handler(ev)
	}, opts)
}

// run runs handle, which decodes the event and calls the plugin's handler.
func run(handle func(raw []byte) error, opts []Option) (*Result, error) {
	c := &call{}
	for _, o := range opts {
		o.apply(c)
	}
	if c.event == nil {
		return nil, errors.New("sdktest: no event (pass sdktest.Event)")
	}
	if wasm := os.Getenv(EnvWasm); wasm != "" {
		return runWasm(wasm, c)
	}
	return runNative(handle, c)
}

func runNative(handle func(raw []byte) error, c *call) (*Result, error) {
	mu.Lock()
	defer mu.Unlock()
	h := &host{call: c, res: &Result{}}
	hostcall.Native = h
	defer func() { hostcall.Native = nil }()
	err := handle(c.event)
	if err == nil && h.refused != nil {
		// The host fails the call even if the plugin ignored the refusal.
		err = h.refused
	}
	return h.res, err
}

// host is the SDK's host for a native run.
type host struct {
	*call
	res     *Result
	refused error
}

func (h *host) Event() []byte { return h.event }

func (h *host) Config(key string) (string, bool) {
	v, ok := h.config[key]
	return v, ok
}

func (h *host) Emit(action, body []byte) int32 {
	refuse := func(status int32, err error) int32 {
		if h.refused == nil {
			h.refused = err
		}
		return status
	}
	switch {
	case len(h.res.Requests) >= maxRequests:
		return refuse(hostcall.TooMany, fmt.Errorf("more than %d actions for one event", maxRequests))
	case len(action)+len(body) > maxRequestBytes:
		return refuse(hostcall.TooLarge, fmt.Errorf("action of %d bytes is over the limit of %d", len(action)+len(body), maxRequestBytes))
	}
	r, err := parseAction(action)
	if err != nil {
		return refuse(hostcall.Malformed, err)
	}
	if len(body) > 0 {
		r.Body = bytes.Clone(body)
	}
	h.res.Requests = append(h.res.Requests, r)
	return hostcall.OK
}

func (h *host) Log(level int32, msg string, attrs []byte) {
	l := Log{Level: slog.Level(level).String(), Msg: msg}
	fields := bytes.Split(attrs, []byte{0})
	for i := 0; i+1 < len(fields); i += 2 {
		l.Attrs = append(l.Attrs, [2]string{string(fields[i]), string(fields[i+1])})
	}
	h.res.Logs = append(h.res.Logs, l)
}

func (h *host) Fail(string) {}

// action is the ABI's action (host/plugin's wireAction) as action_emit_body
// takes it, read with the host's strictness: unknown fields are refused,
// and so is a body, which comes beside the JSON.
type action struct {
	Type           string         `json:"type"`
	Method         string         `json:"method"`
	URL            string         `json:"url"`
	Headers        [][2]string    `json:"headers"`
	Sign           *sdk.Signature `json:"sign"`
	IdempotencyKey string         `json:"idempotencyKey"`
	Resource       string         `json:"resource"`
}

// parseAction applies the checks host/plugin applies to an emitted action.
func parseAction(b []byte) (Request, error) {
	var a action
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		return Request{}, fmt.Errorf("malformed action: %w", err)
	}
	if a.Type != "http" {
		return Request{}, fmt.Errorf("malformed action: unknown type %q", a.Type)
	}
	r := Request{Method: a.Method, URL: a.URL, Headers: a.Headers, Sign: a.Sign, IdempotencyKey: a.IdempotencyKey}
	if r.Method == "" {
		r.Method = "POST"
	}
	if !isToken(r.Method) {
		return Request{}, fmt.Errorf("malformed action: bad method %q", r.Method)
	}
	u, err := url.Parse(r.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Request{}, fmt.Errorf("malformed action: url %q is not an absolute http(s) URL", r.URL)
	}
	for _, h := range r.Headers {
		if !isToken(h[0]) || strings.ContainsAny(h[1], "\r\n\x00") {
			return Request{}, fmt.Errorf("malformed action: bad header %q", h[0])
		}
	}
	if s := r.Sign; s != nil {
		if s.Scheme != sdk.SchemeHMAC && s.Scheme != sdk.SchemeStandardWebhooks {
			return Request{}, fmt.Errorf("malformed action: unknown signing scheme %q", s.Scheme)
		}
		if s.Secret == "" {
			return Request{}, errors.New("malformed action: signing without a secret name")
		}
	}
	return r, nil
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7F || strings.IndexByte("()<>@,;:\\\"/[]?={}", c) >= 0 {
			return false
		}
	}
	return true
}

// runWasm has the real host run the module: lkedge plugin run --json.
func runWasm(wasm string, c *call) (*Result, error) {
	bin := os.Getenv(EnvBin)
	if bin == "" {
		bin = "lkedge"
	}
	args := []string{"plugin", "run", "--json", "--event", "-"}
	keys := make([]string, 0, len(c.config))
	for k := range c.config {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		args = append(args, "--config", k+"="+c.config[k])
	}
	args = append(args, wasm)
	cmd := exec.Command(bin, args...)
	cmd.Stdin = bytes.NewReader(c.event)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var out Output
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		return nil, fmt.Errorf("sdktest: %s %s: %v (output unreadable: %v); stderr: %s", bin, strings.Join(args, " "), runErr, err, bytes.TrimSpace(stderr.Bytes()))
	}
	if out.Error != "" {
		return &out.Result, errors.New(out.Error)
	}
	if runErr != nil {
		return nil, fmt.Errorf("sdktest: %s plugin run: %w; stderr: %s", bin, runErr, bytes.TrimSpace(stderr.Bytes()))
	}
	return &out.Result, nil
}
