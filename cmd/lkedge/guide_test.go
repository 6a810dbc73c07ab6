package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// guideCommands returns the shell blocks of one section of a markdown
// file, in order, with their indentation removed.
func guideCommands(t *testing.T, file, section string) string {
	t.Helper()
	doc, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var script strings.Builder
	in, block := false, false
	for line := range strings.Lines(string(doc)) {
		trimmed := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "## "):
			in = strings.TrimSpace(line) == "## "+section
		case !in:
		case block && trimmed == "```":
			block = false
		case block:
			script.WriteString(trimmed + "\n")
		case trimmed == "```sh":
			block = true
		}
	}
	if script.Len() == 0 {
		t.Fatalf("no sh blocks under %q in %s", section, file)
	}
	return script.String()
}

// TestPluginGuide runs the commands of docs/plugins.md's "A plugin from
// zero" as the guide writes them, in an empty folder, with this test
// binary as the lkedge on the PATH: plugin new, go test, the wasm build,
// the tests against the module, plugin check and plugin run on the
// scaffold's event.json, which must print the request.
func TestPluginGuide(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go command")
	}
	script := guideCommands(t, "../../docs/plugins.md", "A plugin from zero")
	for _, want := range []string{"lkedge plugin new", "go test", "go build", "lkedge plugin check", "lkedge plugin run --event event.json"} {
		if !strings.Contains(script, want) {
			t.Fatalf("the guide no longer runs %q; its commands:\n%s", want, script)
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	if err := os.Symlink(self, filepath.Join(bin, "lkedge")); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-ec", script)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"), asCLI+"=1",
		"GOPROXY=off", "GOFLAGS=", "GOWORK=off", "GOTOOLCHAIN=local")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the guide's commands failed: %v\n%s\n%s", err, script, out)
	}
	for _, want := range []string{
		"an lkedge plugin, ABI v1",
		"1 request\n\n#1 POST https://example.com/hook\nContent-Type: application/json\nIdempotency-Key: EV_1\n",
		`{"event":"egress_ended","room":"room-1","status":"EGRESS_COMPLETE","file":"room-1.mp4"}`,
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the guide's commands did not print %q:\n%s", want, out)
		}
	}
}
