package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/lkedge/lkedge/sdk/sdktest"
)

// documentedTypes are the event types docs/events.md names: the LiveKit
// ones in the `type` row of its field table and lkedge's own in the table
// under "lkedge's own events".
func documentedTypes(t *testing.T) []string {
	t.Helper()
	doc, err := os.ReadFile("../../docs/events.md")
	if err != nil {
		t.Fatal(err)
	}
	name := regexp.MustCompile("`([a-zA-Z_]+)`")
	var types []string
	own := false
	for line := range strings.Lines(string(doc)) {
		switch {
		case strings.HasPrefix(line, "| `type` | string |"):
			for _, m := range name.FindAllStringSubmatch(line, -1)[1:] {
				types = append(types, m[1])
			}
		case strings.HasPrefix(line, "## "):
			own = strings.HasPrefix(line, "## lkedge's own events")
		case own && strings.HasPrefix(line, "| `"):
			types = append(types, name.FindStringSubmatch(line)[1])
		}
	}
	if len(types) < 13 {
		t.Fatalf("found only %v in docs/events.md", types)
	}
	return types
}

// TestShippedEvents holds testdata/events to one example per event type
// docs/events.md lists, each a single JSON object of its type that
// `lkedge plugin run --event` accepts: each file is run through the real
// host and the standard-webhooks plugin, which forwards any event whole.
func TestShippedEvents(t *testing.T) {
	const dir = "../../testdata/events/"
	files, err := filepath.Glob(dir + "*.event.json")
	if err != nil {
		t.Fatal(err)
	}
	var shipped []string
	for _, f := range files {
		shipped = append(shipped, strings.TrimSuffix(filepath.Base(f), ".event.json"))
	}
	types := documentedTypes(t)
	for _, typ := range types {
		if !slices.Contains(shipped, typ) {
			t.Errorf("docs/events.md lists %s, but testdata/events has no %s.event.json", typ, typ)
		}
	}
	if testing.Short() {
		t.Skip("builds a plugin")
	}
	forward := wasmFile(t, "../../plugins/standard-webhooks")
	for _, typ := range shipped {
		t.Run(typ, func(t *testing.T) {
			file := dir + typ + ".event.json"
			var out bytes.Buffer
			if err := pluginCmd([]string{"run", "--json", "--event", file, "--config", "url=https://example.com/hook", forward}, nil, &out); err != nil {
				t.Fatalf("plugin run --event %s: %v\n%s", file, err, out.Bytes())
			}
			var res sdktest.Output
			if err := json.Unmarshal(out.Bytes(), &res); err != nil {
				t.Fatal(err)
			}
			if len(res.Requests) != 1 {
				t.Fatalf("plugin run gave %d requests, want 1:\n%s", len(res.Requests), out.Bytes())
			}
			var sent struct {
				Type string `json:"type"`
				Data struct {
					Type string `json:"type"`
				} `json:"data"`
			}
			if err := json.Unmarshal(res.Requests[0].Body, &sent); err != nil {
				t.Fatal(err)
			}
			if sent.Type != typ || sent.Data.Type != typ {
				t.Errorf("%s was read as a %q event (data %q)", file, sent.Type, sent.Data.Type)
			}
		})
	}
}
