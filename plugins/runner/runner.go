// Package runner calls a plugin through the real host (host/plugin) and
// reports the call in sdktest's terms, so that `lkedge plugin run --json`,
// the sdktest kit reading it, and the built-in plugins' tests all describe a
// call the same way as a native sdktest run does.
package runner

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"

	"github.com/lkedge/lkedge/host/plugin"
	"github.com/lkedge/lkedge/sdk"
	"github.com/lkedge/lkedge/sdk/sdktest"
)

// Call runs p on event and returns what it asked for, the plugin's error in
// out.Error, and the host's actions themselves for whoever sends them.
func Call(ctx context.Context, p *plugin.Plugin, event []byte) (out sdktest.Output, actions []plugin.Action) {
	logs := &capture{}
	actions, err := p.Call(ctx, event, slog.New(logs))
	out.Logs = logs.lines()
	for _, a := range actions {
		out.Requests = append(out.Requests, Request(a))
	}
	if err != nil {
		out.Error, out.Kind = err.Error(), "error"
		var ce *plugin.CallError
		if errors.As(err, &ce) {
			// The message alone, as the handler or the refusal wrote it;
			// the kind says which.
			out.Error, out.Kind = ce.Err.Error(), ce.Kind
			if ce.Stderr != "" {
				out.Error += "; stderr: " + ce.Stderr
			}
		}
	}
	return out, actions
}

// Request is the host's action as sdktest describes it.
func Request(a plugin.Action) sdktest.Request {
	r := sdktest.Request{Method: a.Method, URL: a.URL, Headers: a.Headers, IdempotencyKey: a.IdempotencyKey}
	if len(a.Body) > 0 {
		r.Body = a.Body
	}
	if s := a.Sign; s != nil {
		r.Sign = &sdk.Signature{Scheme: s.Scheme, Secret: s.Secret, Header: s.Header, TimestampHeader: s.TimestampHeader, Template: s.Template, Timestamp: s.Timestamp}
	}
	return r
}

// capture is a slog handler keeping the plugin's log lines. The host names
// the plugin in an attribute "plugin" and prefixes the plugin's own
// attributes with "plugin."; both are undone here.
type capture struct {
	mu    sync.Mutex
	logs  []sdktest.Log
	attrs []slog.Attr
	root  *capture
}

func (c *capture) Enabled(context.Context, slog.Level) bool { return true }

func (c *capture) Handle(_ context.Context, r slog.Record) error {
	l := sdktest.Log{Level: r.Level.String(), Msg: r.Message}
	add := func(a slog.Attr) bool {
		if k, ok := strings.CutPrefix(a.Key, "plugin."); ok {
			l.Attrs = append(l.Attrs, [2]string{k, a.Value.String()})
		} else if a.Key != "plugin" {
			l.Attrs = append(l.Attrs, [2]string{a.Key, a.Value.String()})
		}
		return true
	}
	for _, a := range c.attrs {
		add(a)
	}
	r.Attrs(add)
	root := c.top()
	root.mu.Lock()
	root.logs = append(root.logs, l)
	root.mu.Unlock()
	return nil
}

func (c *capture) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &capture{attrs: append(append([]slog.Attr(nil), c.attrs...), attrs...), root: c.top()}
}

// WithGroup is not used by the host; groups would only nest the keys.
func (c *capture) WithGroup(string) slog.Handler { return c }

func (c *capture) top() *capture {
	if c.root != nil {
		return c.root
	}
	return c
}

func (c *capture) lines() []sdktest.Log {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.logs
}
