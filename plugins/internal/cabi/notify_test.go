package cabi

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/lkedge/lkedge/host/plugin"
	"github.com/lkedge/lkedge/plugins/runner"
	"github.com/lkedge/lkedge/sdk/sdktest"
)

// TestNotify runs the C plugin, built by docs/abi.md's freestanding recipe,
// through the host on every shipped example event: each becomes exactly
// one POST of the event's bytes, keyed by its id. With one instance, the
// count it logs shows its globals living across events.
func TestNotify(t *testing.T) {
	wasm := buildC(t, freestanding, notify(t))
	p := load(t, wasm, plugin.Options{Limits: plugin.Limits{Instances: 1}, Config: map[string]string{"url": "https://hooks.example.com/lkedge?a=1"}})
	files, err := filepath.Glob("../../../testdata/events/*.event.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no events: %v", err)
	}
	for i, f := range files {
		event, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var head struct{ ID, Type string }
		if err := json.Unmarshal(event, &head); err != nil {
			t.Fatal(err)
		}
		out, _ := runner.Call(context.Background(), p, event)
		want := sdktest.Output{Result: sdktest.Result{
			Requests: []sdktest.Request{{
				Method: "POST", URL: "https://hooks.example.com/lkedge?a=1",
				Headers:        [][2]string{{"Content-Type", "application/json"}},
				Body:           event,
				IdempotencyKey: head.ID,
			}},
			Logs: []sdktest.Log{{Level: "INFO", Msg: "forwarded", Attrs: [][2]string{{"type", head.Type}, {"n", strconv.Itoa(i + 1)}}}},
		}}
		if !reflect.DeepEqual(out, want) {
			t.Errorf("%s:\n got %+v\nwant %+v", f, out, want)
		}
	}
}

// TestNotifyRefuses: the C plugin fails as the ABI says a plugin fails,
// with its reason, and escapes what it puts in the request's JSON.
func TestNotifyRefuses(t *testing.T) {
	wasm := buildC(t, freestanding, notify(t))
	event := []byte(`{"version":1,"id":"EV_\"q\"","type":"room_started","room":{"name":"r"}}`)
	for _, tc := range []struct {
		name    string
		config  map[string]string
		event   []byte
		wantErr string
		wantURL string
	}{
		{"no url", nil, event, `config key not set: "url"`, ""},
		{"url too long", map[string]string{"url": "https://example.com/" + strings.Repeat("a", 2100)}, event, "config url is longer than 2048 bytes", ""},
		{"url escaped", map[string]string{"url": "https://example.com/a\"b\\c"}, event, "", "https://example.com/a\"b\\c"},
		// The host's refusal, not the plugin's reason, is the call's error.
		{"not http", map[string]string{"url": "ftp://example.com/"}, event, `url "ftp://example.com/" is not an absolute http(s) URL`, ""},
		{"no id", map[string]string{"url": "https://example.com/"}, []byte(`{"type":"x","nested":{"id":"EV_1"}}`), "event without a string id and type", ""},
		{"id not a string", map[string]string{"url": "https://example.com/"}, []byte(`{"id":1,"type":"x"}`), "event without a string id and type", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := load(t, wasm, plugin.Options{Config: tc.config})
			out, _ := runner.Call(context.Background(), p, tc.event)
			if tc.wantErr != "" {
				if (out.Kind != plugin.KindError && out.Kind != plugin.KindOutput) || !strings.Contains(out.Error, tc.wantErr) || len(out.Requests) != 0 {
					t.Fatalf("got %+v, want error %q and no request", out, tc.wantErr)
				}
				return
			}
			if out.Error != "" || len(out.Requests) != 1 || out.Requests[0].URL != tc.wantURL || out.Requests[0].IdempotencyKey != `EV_"q"` ||
				!bytes.Equal(out.Requests[0].Body, tc.event) {
				t.Fatalf("got %+v, want one request to %q keyed EV_\"q\"", out, tc.wantURL)
			}
		})
	}
}
