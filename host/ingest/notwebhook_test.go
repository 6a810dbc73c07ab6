package ingest_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/lkedge/lkedge/host/metrics"
)

// lockedBuffer collects log lines written from the server's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for line := range strings.Lines(l.b.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// TestNotAWebhook: a correctly signed body that is not a LiveKit webhook is
// answered 400 with its reason, logged and counted, and neither journaled nor
// processed. An event name lkedge does not know, written as LiveKit writes
// its names, is one a newer LiveKit may send: it is accepted.
func TestNotAWebhook(t *testing.T) {
	for _, tc := range []struct {
		body, logErr string
		wantStatus   int
	}{
		{`{}`, "not a LiveKit webhook: no event name", 400},
		{`{"hello":1}`, "not a LiveKit webhook: no event name", 400},
		{`{"event":""}`, "not a LiveKit webhook: no event name", 400},
		{`{"event":"","id":"EV_empty","room":{"name":"r1"}}`, "not a LiveKit webhook: no event name", 400},
		{`{"event":"Room Started","id":"EV_spaces"}`, `not a LiveKit webhook: event name "Room Started" is not lower-case words joined by _`, 400},
		{`{"event":"` + strings.Repeat("x", 65) + `"}`, "not a LiveKit webhook: event name of 65 bytes, over 64", 400},
		{`{"event":"agent_job_from_the_future","id":"EV_new"}`, "", 200},
	} {
		t.Run(tc.body, func(t *testing.T) {
			h, j, p := newHandler(nil)
			var logs lockedBuffer
			h.Log = slog.New(slog.NewJSONHandler(&logs, nil))
			c := serve(t, h)
			rejected := metrics.WebhooksRejected.WithLabelValues("not_a_webhook")
			before := testutil.ToFloat64(rejected)

			resp := do(t, c, request{body: []byte(tc.body), auth: sign(t, []byte(tc.body), "devkey", "secret", fixedNow)})

			if resp.StatusCode() != tc.wantStatus {
				t.Fatalf("status %d (%q), want %d", resp.StatusCode(), resp.Body(), tc.wantStatus)
			}
			if tc.wantStatus == 200 {
				if len(j.appends()) != 1 || len(p.submits()) != 1 {
					t.Errorf("%d appends, %d submits; want 1, 1", len(j.appends()), len(p.submits()))
				}
				return
			}
			if got := string(resp.Body()); got != "not_a_webhook\n" {
				t.Errorf("body %q, want %q", got, "not_a_webhook\n")
			}
			if d := testutil.ToFloat64(rejected) - before; d != 1 {
				t.Errorf("lkedge_webhooks_rejected_total{reason=not_a_webhook} delta %v, want 1", d)
			}
			if n, m := len(j.appends()), len(p.submits()); n != 0 || m != 0 {
				t.Errorf("%d appends, %d submits; a refused body is neither journaled nor processed", n, m)
			}
			lines := logs.lines(t)
			if len(lines) != 1 || lines[0]["msg"] != "webhook refused" || lines[0]["reason"] != "not_a_webhook" || lines[0]["status"] != 400.0 || lines[0]["err"] != tc.logErr {
				t.Errorf("log lines %v\nwant one \"webhook refused\" with status 400, reason not_a_webhook, err %q", lines, tc.logErr)
			}
		})
	}
}
