package plugin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"strings"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/lkedge/lkedge/host/plugin/internal/interrupt"
)

// hostModule is the import module of the ABI's host functions.
const hostModule = "lkedge"

// Status codes the host functions return to the guest (docs/abi.md). A
// host function never traps the guest: bad input gets a status.
const (
	statusOK         int32 = 0
	statusNoEvent    int32 = -1
	statusBadMemory  int32 = -2
	statusNotFound   int32 = -3
	statusMalformed  int32 = -4
	statusTooMany    int32 = -5
	statusTooLarge   int32 = -6
	statusNotAllowed int32 = -7
)

// Per-call bounds on what a plugin may log, so a chatty or hostile plugin
// cannot flood the host's log.
const (
	maxLogLines    = 64
	maxLogLineSize = 4 << 10
	maxFailSize    = 4 << 10
)

type callKey struct{}

// call is the state of one guest call, found by the host functions
// through the context.
type call struct {
	plugin   *Plugin
	inst     *instance
	event    []byte
	log      *slog.Logger
	actions  []Action
	refused  error
	failMsg  string
	logLines int
	// deadline is when the call's time is up (Unix ns); timedOut records
	// that interruptCheck stopped it.
	deadline int64
	timedOut bool
	// pauseAt is when the call next leaves its core (Unix ns; see
	// runStretch).
	pauseAt int64
}

// A call that runs long leaves its core to the host for pauseFor after
// each runStretch of running. Compiled wasm cannot be preempted by Go, and
// the kernel lets a thread that just woke (one with a webhook to answer)
// wait up to a time slice, several milliseconds, for a core a spinning
// guest holds: beside plugins that spin to their limit, the accept path's
// p99 doubled. A sleep frees the core at once, for any thread of any
// process. Calls shorter than runStretch, nearly all of them, never pause;
// a longer one gets about a fifth of a core, within the same time limit
// (wall time), so a hostile plugin wastes a fifth as much.
const (
	runStretch = 250 * time.Microsecond
	pauseFor   = time.Millisecond
)

type hostFunc struct {
	fn      api.GoModuleFunc
	params  []api.ValueType
	results []api.ValueType
}

var i32 = api.ValueTypeI32

var hostFunctions = map[string]hostFunc{
	"event_read":       {eventRead, []api.ValueType{i32, i32}, []api.ValueType{i32}},
	"config_get":       {configGet, []api.ValueType{i32, i32, i32, i32}, []api.ValueType{i32}},
	"action_emit":      {actionEmit, []api.ValueType{i32, i32}, []api.ValueType{i32}},
	"action_emit_body": {actionEmitBody, []api.ValueType{i32, i32, i32, i32}, []api.ValueType{i32}},
	"log":              {logLine, []api.ValueType{i32, i32, i32, i32, i32}, []api.ValueType{i32}},
	"fail":             {failCall, []api.ValueType{i32, i32}, []api.ValueType{i32}},
	// Imported by the instrumentation, not by plugins (package interrupt).
	interrupt.Name:     {interruptCheck, nil, []api.ValueType{i32}},
	interrupt.GrowName: {growCheck, []api.ValueType{i32, i32}, []api.ValueType{i32}},
}

// interruptCheck answers an instrumented guest whose check budget ran out:
// a new budget, or 0 once the call is past its deadline, which makes the
// guest trap. Guest code runs only inside a call (the start function and
// _initialize included); outside one it is stopped.
func interruptCheck(ctx context.Context, _ api.Module, stack []uint64) {
	c := current(ctx)
	now := time.Now().UnixNano()
	if c == nil || now >= c.deadline {
		if c != nil {
			c.timedOut = true
		}
		status(stack, 0)
		return
	}
	if now >= c.pauseAt {
		time.Sleep(min(pauseFor, time.Duration(c.deadline-now)))
		// Its stretch run, the call lets the calls waiting for a place go
		// first. A shorter call keeps its place to the end: had it given
		// it to a call of the same plugin, that call would have started
		// an instance of its own, one more warm instance to keep.
		if s := c.inst.sleeper; s != nil {
			s.Yield()
		}
	}
	// Off its core for a while, paused or waiting for its place, the call
	// starts a new stretch.
	after := time.Now().UnixNano()
	if after-now >= int64(pauseFor)/2 {
		c.pauseAt = after + int64(runStretch)
	}
	if after >= c.deadline {
		c.timedOut = true
		status(stack, 0)
		return
	}
	status(stack, checkBudget)
}

// growCheck answers an instrumented guest about to run memory.grow or
// table.grow: the delta, or 0xFFFFFFFF, which makes the instruction fail
// as it would past a declared maximum, when the growth would take the
// instance's memory and tables together past its memory limit.
func growCheck(ctx context.Context, mod api.Module, stack []uint64) {
	c := current(ctx)
	delta, what := api.DecodeU32(stack[0]), api.DecodeI32(stack[1])
	if c == nil || c.inst == nil || !c.inst.grow(mod.Memory(), what, delta) {
		stack[0] = api.EncodeU32(math.MaxUint32)
		return
	}
	stack[0] = api.EncodeU32(delta)
}

func instantiateHost(ctx context.Context, rt wazero.Runtime) error {
	b := rt.NewHostModuleBuilder(hostModule)
	for name, f := range hostFunctions {
		b.NewFunctionBuilder().WithGoModuleFunction(f.fn, f.params, f.results).Export(name)
	}
	_, err := b.Instantiate(ctx)
	return err
}

func current(ctx context.Context) *call {
	c, _ := ctx.Value(callKey{}).(*call)
	return c
}

func status(stack []uint64, s int32) { stack[0] = api.EncodeI32(s) }

// eventRead(buf, size) copies the event into the guest's buffer if it fits
// and returns the event's length.
func eventRead(ctx context.Context, mod api.Module, stack []uint64) {
	c := current(ctx)
	if c == nil || c.event == nil {
		status(stack, statusNoEvent)
		return
	}
	buf, size := api.DecodeU32(stack[0]), api.DecodeU32(stack[1])
	if int(size) >= len(c.event) && !mod.Memory().Write(buf, c.event) {
		status(stack, statusBadMemory)
		return
	}
	status(stack, int32(len(c.event)))
}

// configGet(key, keyLen, buf, size) copies the value of key if it fits and
// returns its length.
func configGet(ctx context.Context, mod api.Module, stack []uint64) {
	c := current(ctx)
	key, ok := mod.Memory().Read(api.DecodeU32(stack[0]), api.DecodeU32(stack[1]))
	if !ok || c == nil {
		status(stack, statusBadMemory)
		return
	}
	var v string
	var found bool
	if lookup := c.plugin.opts.Lookup; lookup != nil {
		v, found = lookup(ctx, string(key))
	} else {
		v, found = c.plugin.opts.Config[string(key)]
	}
	if !found {
		status(stack, statusNotFound)
		return
	}
	buf, size := api.DecodeU32(stack[2]), api.DecodeU32(stack[3])
	if int(size) >= len(v) && !mod.Memory().WriteString(buf, v) {
		status(stack, statusBadMemory)
		return
	}
	status(stack, int32(len(v)))
}

// actionEmit(ptr, len) hands the host one action, its body inside the
// JSON.
func actionEmit(ctx context.Context, mod api.Module, stack []uint64) {
	emit(ctx, mod, stack, api.DecodeU32(stack[0]), api.DecodeU32(stack[1]), 0, 0, false)
}

// actionEmitBody(ptr, len, body, bodyLen) hands the host one action whose
// body comes as raw bytes beside the JSON: a body would otherwise be
// escaped into a JSON string by the guest and unescaped by the host, which
// for a webhook carrying the event is most of what sending it costs.
func actionEmitBody(ctx context.Context, mod api.Module, stack []uint64) {
	emit(ctx, mod, stack, api.DecodeU32(stack[0]), api.DecodeU32(stack[1]), api.DecodeU32(stack[2]), api.DecodeU32(stack[3]), true)
}

func emit(ctx context.Context, mod api.Module, stack []uint64, ptr, size, bodyPtr, bodySize uint32, rawBody bool) {
	c := current(ctx)
	if c == nil || c.event == nil {
		status(stack, statusNoEvent)
		return
	}
	lim := c.plugin.limits
	if len(c.actions) >= lim.MaxActions {
		c.refuse(fmt.Errorf("more than %d actions for one event", lim.MaxActions))
		status(stack, statusTooMany)
		return
	}
	if total := uint64(size) + uint64(bodySize); total > uint64(lim.MaxActionBytes) {
		c.refuse(fmt.Errorf("action of %d bytes is over the limit of %d", total, lim.MaxActionBytes))
		status(stack, statusTooLarge)
		return
	}
	b, ok := mod.Memory().Read(ptr, size)
	var body []byte
	if rawBody && ok {
		body, ok = mod.Memory().Read(bodyPtr, bodySize)
	}
	if !ok {
		status(stack, statusBadMemory)
		return
	}
	a, err := parseAction(b, rawBody)
	if err != nil {
		c.refuse(err)
		status(stack, statusMalformed)
		return
	}
	if rawBody && len(body) > 0 {
		// A view of the guest's memory, which the guest reuses: copy it.
		a.Body = bytes.Clone(body)
	}
	if check := c.plugin.opts.CheckAction; check != nil {
		if err := check(&a); err != nil {
			c.refuse(err)
			status(stack, statusNotAllowed)
			return
		}
	}
	c.actions = append(c.actions, a)
	status(stack, statusOK)
}

// refuse remembers the first refused action: the call fails with it even if
// the plugin ignores the status, so nothing it meant to send is silently
// dropped.
func (c *call) refuse(err error) {
	if c.refused == nil {
		c.refused = err
	}
}

// logLine(level, msg, msgLen, attrs, attrsLen) writes a line to the host's
// log; attrs are key\x00value\x00 pairs.
func logLine(ctx context.Context, mod api.Module, stack []uint64) {
	c := current(ctx)
	mem := mod.Memory()
	msg, ok1 := mem.Read(api.DecodeU32(stack[1]), api.DecodeU32(stack[2]))
	attrs, ok2 := mem.Read(api.DecodeU32(stack[3]), api.DecodeU32(stack[4]))
	if !ok1 || !ok2 || c == nil {
		status(stack, statusBadMemory)
		return
	}
	c.logLines++
	if c.logLines > maxLogLines {
		if c.logLines == maxLogLines+1 {
			c.log.Warn("plugin log lines over the per-event limit are dropped", "limit", maxLogLines)
		}
		status(stack, statusTooMany)
		return
	}
	// Only the four levels a plugin has: a level past them would print
	// as ERROR+12337, or claim more urgency than any host message.
	level := min(max(slog.Level(api.DecodeI32(stack[0])), slog.LevelDebug), slog.LevelError)
	args := []any{}
	fields := bytes.Split(truncate(attrs, maxLogLineSize), []byte{0})
	for i := 0; i+1 < len(fields); i += 2 {
		args = append(args, slog.String("plugin."+string(fields[i]), string(fields[i+1])))
	}
	c.log.Log(ctx, level, string(truncate(msg, maxLogLineSize)), args...)
	status(stack, statusOK)
}

// failCall(msg, len) sets the error message of the call.
func failCall(ctx context.Context, mod api.Module, stack []uint64) {
	c := current(ctx)
	msg, ok := mod.Memory().Read(api.DecodeU32(stack[0]), api.DecodeU32(stack[1]))
	if !ok || c == nil {
		status(stack, statusBadMemory)
		return
	}
	c.failMsg = string(truncate(msg, maxFailSize))
	status(stack, statusOK)
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// Action is an HTTP request a plugin asked the host to send.
type Action struct {
	Method  string
	URL     string
	Headers [][2]string
	Body    []byte
	Sign    *Sign
	// IdempotencyKey, if the plugin set one; the host derives one otherwise.
	IdempotencyKey string
	// Resource overrides the ordering key (by default the event's room or
	// egress).
	Resource string
}

// Sign is how the host should sign an action (docs/abi.md).
type Sign struct {
	Scheme          string `json:"scheme"`
	Secret          string `json:"secret"`
	Header          string `json:"header"`
	TimestampHeader string `json:"timestampHeader"`
	Template        string `json:"template"`
	Timestamp       string `json:"timestamp"`
}

// Signing schemes.
const (
	SchemeHMAC             = "hmac-sha256-hex"
	SchemeStandardWebhooks = "standard-webhooks"
)

type wireAction struct {
	Type           string      `json:"type"`
	Method         string      `json:"method"`
	URL            string      `json:"url"`
	Headers        [][2]string `json:"headers"`
	Body           string      `json:"body"`
	BodyBase64     []byte      `json:"bodyBase64"`
	Sign           *Sign       `json:"sign"`
	IdempotencyKey string      `json:"idempotencyKey"`
	Resource       string      `json:"resource"`
}

// parseAction decodes and checks an action's JSON. With rawBody the body
// comes beside it (action_emit_body), so the JSON must not carry one.
func parseAction(b []byte, rawBody bool) (Action, error) {
	var w wireAction
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return Action{}, fmt.Errorf("malformed action: %w", err)
	}
	if w.Type != "http" {
		return Action{}, fmt.Errorf("malformed action: unknown type %q", w.Type)
	}
	a := Action{Method: w.Method, URL: w.URL, Headers: w.Headers, Body: []byte(w.Body), Sign: w.Sign,
		IdempotencyKey: w.IdempotencyKey, Resource: w.Resource}
	if rawBody && (w.Body != "" || w.BodyBase64 != nil) {
		return Action{}, errors.New("malformed action: body in the JSON of action_emit_body, which takes it as raw bytes")
	}
	if w.BodyBase64 != nil {
		if w.Body != "" {
			return Action{}, errors.New("malformed action: both body and bodyBase64")
		}
		a.Body = w.BodyBase64
	}
	if a.Method == "" {
		a.Method = "POST"
	}
	if !isToken(a.Method) {
		return Action{}, fmt.Errorf("malformed action: bad method %q", a.Method)
	}
	u, err := url.Parse(a.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Action{}, fmt.Errorf("malformed action: url %q is not an absolute http(s) URL", a.URL)
	}
	for _, h := range a.Headers {
		if !isToken(h[0]) || strings.ContainsAny(h[1], "\r\n\x00") {
			return Action{}, fmt.Errorf("malformed action: bad header %q", h[0])
		}
	}
	if s := a.Sign; s != nil {
		if s.Scheme != SchemeHMAC && s.Scheme != SchemeStandardWebhooks {
			return Action{}, fmt.Errorf("malformed action: unknown signing scheme %q", s.Scheme)
		}
		if s.Secret == "" {
			return Action{}, errors.New("malformed action: signing without a secret name")
		}
	}
	return a, nil
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
