package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestDLQCommands checks what each dlq and events failed command asks the
// operator API and prints; the API itself is tested with a real outbox and
// journal in host/service. A missing id is the API's one plain line.
func TestDLQCommands(t *testing.T) {
	var asked []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked = append(asked, r.Method+" "+r.URL.RequestURI())
		switch r.URL.Path {
		case "/dlq":
			w.Write([]byte(`[{"id":"EV_1/slack/0","plugin":"slack","url":"https://hooks.slack.com/x","attempts":6,"last_error":"HTTP 500","dead_at":"2026-11-29T10:00:00Z"}]`))
		case "/dlq/show":
			w.Write([]byte(`{"id":"EV_1/slack/0"}`))
		case "/dlq/replay":
			if r.URL.Query().Get("id") == "missing" {
				http.Error(w, "no dead letter missing", http.StatusNotFound)
				return
			}
			w.Write([]byte(`{"replayed":2}`))
		case "/events/failed":
			w.Write([]byte(`[{"seq":7,"id":"EV_9","event":"egress_ended","failed_at":"2026-11-29T10:00:00Z","reason":"sink said 500"}]`))
		case "/events/failed/show":
			w.Write([]byte(`{"seq":7,"id":"EV_9"}`))
		case "/events/failed/retry":
			if r.URL.Query().Get("id") == "missing" {
				http.Error(w, "no failed event missing", http.StatusNotFound)
				return
			}
			w.Write([]byte(`{"retried":"EV_9","seq":7}`))
		}
	}))
	defer srv.Close()
	for _, tc := range []struct {
		args    []string
		asked   string
		out     string
		wantErr string
	}{
		{[]string{"list", "--admin", srv.URL}, "GET /dlq?", "EV_1/slack/0  slack   6         HTTP 500", ""},
		{[]string{"list", "--admin", srv.URL, "--since", "2026-11-29T00:00:00Z", "--limit", "5"}, "GET /dlq?limit=5&since=2026-11-29T00%3A00%3A00Z", "DEAD AT", ""},
		{[]string{"show", "--admin", srv.URL, "EV_1/slack/0"}, "GET /dlq/show?id=EV_1%2Fslack%2F0", `{"id":"EV_1/slack/0"}`, ""},
		{[]string{"replay", "--admin", srv.URL, "EV_1/slack/0"}, "POST /dlq/replay?id=EV_1%2Fslack%2F0", "replayed 2", ""},
		{[]string{"replay", "--admin", srv.URL, "--since", "2026-11-29T00:00:00Z"}, "POST /dlq/replay?since=2026-11-29T00%3A00%3A00Z", "replayed 2", ""},
		{[]string{"replay", "--admin", srv.URL, "missing"}, "POST /dlq/replay?id=missing", "", "no dead letter missing"},
		{[]string{"replay", "--admin", srv.URL}, "", "", "needs one ID or --since"},
		{[]string{"list", "--admin", srv.URL, "--since", "yesterday"}, "", "", "neither an RFC 3339 time nor a duration"},
		{[]string{"purge"}, "", "", "unknown subcommand"},
		{[]string{"events", "failed", "list", "--admin", srv.URL}, "GET /events/failed", "2026-11-29T10:00:00Z  EV_9  egress_ended  sink said 500", ""},
		{[]string{"events", "failed", "show", "--admin", srv.URL, "EV_9"}, "GET /events/failed/show?id=EV_9", `{"seq":7,"id":"EV_9"}`, ""},
		{[]string{"events", "failed", "retry", "--admin", srv.URL, "EV_9"}, "POST /events/failed/retry?id=EV_9", "retried EV_9", ""},
		{[]string{"events", "failed", "retry", "--admin", srv.URL, "missing"}, "POST /events/failed/retry?id=missing", "", "no failed event missing"},
		{[]string{"events", "failed", "retry", "--admin", srv.URL}, "", "", "needs exactly one ID"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			asked = nil
			var out bytes.Buffer
			var err error
			if tc.args[0] == "events" {
				err = eventsCmd(tc.args[1:], &out)
			} else {
				err = dlq(tc.args, &out)
			}
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr && !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if tc.asked != "" && (len(asked) != 1 || asked[0] != tc.asked) {
				t.Errorf("asked %v, want %q", asked, tc.asked)
			}
			if !strings.Contains(out.String(), tc.out) {
				t.Errorf("output %q does not contain %q", out.String(), tc.out)
			}
		})
	}
}
