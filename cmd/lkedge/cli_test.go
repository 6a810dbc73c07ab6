package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// runCLI runs this test binary as the lkedge command (TestMain) with args
// and returns its stdout, stderr and exit status.
func runCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), asCLI+"=1")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errOut.String(), code
}

// TestHelp: -h on every command and subcommand prints its usage to stdout
// and exits 0, with nothing on stderr.
func TestHelp(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-h"}, "lkedge serve [--config FILE]"},
		{[]string{"help"}, "lkedge events failed list"},
		{[]string{"serve", "-h"}, "usage: lkedge serve [--config FILE]"},
		{[]string{"serve", "--help"}, "usage: lkedge serve [--config FILE]"},
		{[]string{"send", "-h"}, "-url string"},
		{[]string{"lock", "-h"}, "lkedge lock release [--config FILE] [--force] ROOM"},
		{[]string{"lock", "acquire", "-h"}, "-wait-active duration"},
		{[]string{"lock", "release", "-h"}, "-force"},
		{[]string{"lock", "list", "-h"}, "usage: lkedge lock list"},
		{[]string{"plugin", "-h"}, "lkedge plugin new NAME"},
		{[]string{"plugin", "run", "-h"}, "-event string"},
		{[]string{"plugin", "check", "-h"}, "usage: lkedge plugin check PLUGIN.wasm"},
		{[]string{"plugin", "new", "-h"}, "usage: lkedge plugin new NAME"},
		{[]string{"dlq", "-h"}, "lkedge dlq replay ID | --since T"},
		{[]string{"dlq", "list", "-h"}, "-limit int"},
		{[]string{"dlq", "show", "-h"}, "usage: lkedge dlq show"},
		{[]string{"dlq", "replay", "-h"}, "-since string"},
		{[]string{"events", "-h"}, "lkedge events failed retry ID"},
		{[]string{"events", "failed", "-h"}, "lkedge events failed show ID"},
		{[]string{"events", "failed", "list", "-h"}, "-json"},
		{[]string{"events", "failed", "show", "-h"}, "usage: lkedge events failed show"},
		{[]string{"events", "failed", "retry", "-h"}, "usage: lkedge events failed retry"},
		{[]string{"version", "-h"}, "usage: lkedge version"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			out, errOut, code := runCLI(t, tc.args...)
			if code != 0 || errOut != "" || !strings.Contains(out, tc.want) {
				t.Fatalf("exit %d, stderr %q, stdout %q; want exit 0, no stderr, stdout with %q", code, errOut, out, tc.want)
			}
		})
	}
}

// TestBadFlag: a flag a command does not have is an error (exit 1) that
// shows the command's usage.
func TestBadFlag(t *testing.T) {
	_, errOut, code := runCLI(t, "serve", "--nope")
	if code != 1 || !strings.Contains(errOut, "flag provided but not defined: -nope") || !strings.Contains(errOut, "usage: lkedge serve") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}

// TestVersion: the binary built as the Makefile builds it names its module
// and the commit given with -ldflags, even without VCS stamping.
func TestVersion(t *testing.T) {
	if testing.Short() {
		t.Skip("builds lkedge")
	}
	bin := filepath.Join(t.TempDir(), "lkedge")
	build := exec.Command("go", "build", "-buildvcs=false", "-ldflags", "-X main.commit=0123abcd", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^lkedge github.com/lkedge/lkedge \S+\ncommit 0123abcd\ngo1\.`).Match(out) {
		t.Fatalf("lkedge version printed %q", out)
	}
}

// TestServeRefusesMissingPlugins: serve with LKEDGE_PLUGINS naming a file
// that is not there stops at once, saying so, instead of running without
// plugins.
func TestServeRefusesMissingPlugins(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "plugins.yml")
	// Before it was refused, serve ran on without plugins: the context
	// ends such a run.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "serve")
	cmd.Env = append(os.Environ(), asCLI+"=1", "LKEDGE_PLUGINS="+missing, "LKEDGE_DATA_DIR="+t.TempDir(), "LKEDGE_STORE=file://"+t.TempDir(), "LKEDGE_LISTEN=127.0.0.1:0", "LKEDGE_ADMIN_LISTEN=127.0.0.1:0")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("serve: %v, want exit 1\n%s", err, out)
	}
	if want := "lkedge: invalid LKEDGE_PLUGINS (from environment): " + missing + " does not exist (leave it unset to run without plugins)\n"; string(out) != want {
		t.Fatalf("serve printed %q, want %q", out, want)
	}
}
