package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// commit is set by the Makefile (-ldflags -X main.commit=...) for builds
// without VCS stamping (GOFLAGS=-buildvcs=false, or no .git).
var commit string

const versionUsage = "usage: lkedge version\n\nPrint lkedge's module version, the commit it was built from and the Go version.\n"

// version prints the module version and commit of this binary.
func version(args []string, out io.Writer) error {
	if isHelp(args) {
		return help(out, versionUsage)
	}
	if len(args) > 0 {
		return fmt.Errorf("version takes no arguments, got %q", args)
	}
	mod, rev, modified := "(unknown)", commit, false
	if info, ok := debug.ReadBuildInfo(); ok {
		mod = info.Main.Path + " " + info.Main.Version
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	if rev == "" {
		rev = "unknown"
	}
	if modified {
		rev += " (modified)"
	}
	_, err := fmt.Fprintf(out, "lkedge %s\ncommit %s\n%s\n", mod, rev, runtime.Version())
	return err
}
