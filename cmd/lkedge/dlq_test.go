package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestDLQCommands checks what each dlq command asks the operator API and
// prints; the API itself is tested with a real outbox in host/service.
func TestDLQCommands(t *testing.T) {
	var asked []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked = append(asked, r.Method+" "+r.URL.RequestURI())
		switch r.URL.Path {
		case "/dlq":
			w.Write([]byte(`[{"Delivery":{"ID":"EV_1/slack/0","Plugin":"slack","URL":"https://hooks.slack.com/x"},"Attempts":6,"LastError":"HTTP 500","DeadAt":"2026-11-29T10:00:00Z"}]`))
		case "/dlq/show":
			w.Write([]byte(`{"Delivery":{"ID":"EV_1/slack/0"}}`))
		case "/dlq/replay":
			if r.URL.Query().Get("id") == "missing" {
				http.Error(w, "dead letter not found", http.StatusNotFound)
				return
			}
			w.Write([]byte(`{"replayed":2}`))
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
		{[]string{"show", "--admin", srv.URL, "EV_1/slack/0"}, "GET /dlq/show?id=EV_1%2Fslack%2F0", `{"Delivery":{"ID":"EV_1/slack/0"}}`, ""},
		{[]string{"replay", "--admin", srv.URL, "EV_1/slack/0"}, "POST /dlq/replay?id=EV_1%2Fslack%2F0", "replayed 2", ""},
		{[]string{"replay", "--admin", srv.URL, "--since", "2026-11-29T00:00:00Z"}, "POST /dlq/replay?since=2026-11-29T00%3A00%3A00Z", "replayed 2", ""},
		{[]string{"replay", "--admin", srv.URL, "missing"}, "POST /dlq/replay?id=missing", "", "404 Not Found: dead letter not found"},
		{[]string{"replay", "--admin", srv.URL}, "", "", "needs one ID or --since"},
		{[]string{"list", "--admin", srv.URL, "--since", "yesterday"}, "", "", "neither an RFC 3339 time nor a duration"},
		{[]string{"purge"}, "", "", "unknown subcommand"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			asked = nil
			var out bytes.Buffer
			err := dlq(tc.args, &out)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
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
