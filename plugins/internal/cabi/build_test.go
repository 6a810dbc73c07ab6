// Package cabi holds the tests of the C example plugin (plugins/c-notify), and
// of what docs/abi.md's "Other languages" says, with modules built by that
// section's own recipes: the ABI stays usable without the Go SDK.
package cabi

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lkedge/lkedge/host/plugin"
)

// Build recipes: the sh blocks of docs/abi.md's "Other languages", in order.
const (
	freestanding = iota
	wasiLibc
)

// recipes reads the sh blocks of docs/abi.md's "Other languages".
func recipes(t *testing.T) []string {
	t.Helper()
	doc, err := os.ReadFile("../../../docs/abi.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "\n## Other languages\n")
	if !ok {
		t.Fatal("docs/abi.md has no Other languages section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var blocks []string
	for _, part := range strings.Split(section, "```sh\n")[1:] {
		block, _, _ := strings.Cut(part, "```")
		blocks = append(blocks, strings.TrimSpace(block))
	}
	if len(blocks) != 2 || !strings.Contains(blocks[0], "plugin.c") || !strings.Contains(blocks[1], "plugin.c") {
		t.Fatalf("docs/abi.md's Other languages should build plugin.c twice; its sh blocks: %q", blocks)
	}
	return blocks
}

// buildC compiles src as plugin.c with recipe, the clang flags in extra
// added, and returns the module. Without clang and wasm-ld the test fails
// (`make clang` installs them), except under -short, where it is skipped.
func buildC(t *testing.T, recipe int, src string, extra ...string) []byte {
	t.Helper()
	for _, tool := range []string{"clang", "wasm-ld"} {
		if _, err := exec.LookPath(tool); err != nil {
			if testing.Short() {
				t.Skipf("-short and no %s: the C plugin is not built (make clang installs it)", tool)
			}
			t.Fatalf("%s is needed to build the C plugin: run make clang (apt-get install clang lld wasi-libc libclang-rt-dev-wasm32)", tool)
		}
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "plugin.c"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	script := recipes(t)[recipe]
	if len(extra) > 0 {
		script += " " + strings.Join(extra, " ")
	}
	cmd := exec.Command("sh", "-ec", script)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
	wasm, err := os.ReadFile(filepath.Join(dir, "plugin.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	return wasm
}

// notify is the example plugin's source.
func notify(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../c-notify/notify.c")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// load loads wasm into the real host.
func load(t *testing.T, wasm []byte, opts plugin.Options) *plugin.Plugin {
	t.Helper()
	if opts.Name == "" {
		opts.Name = "c"
	}
	p, err := plugin.Load(context.Background(), wasm, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close(context.Background()) })
	return p
}
