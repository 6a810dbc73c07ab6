package main

import (
	"bufio"
	"bytes"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestNoMethodLookupByName keeps reflect's method lookup by name out of
// the binary. One reachable call of reflect.Value.MethodByName (text/template
// evaluating a field, for one) makes the linker keep every exported method
// of every type that can reach an interface: aws-sdk-go-v2's whole S3
// client, every protobuf accessor. That is about a third of the binary, and
// the process maps it. The linker marks the functions that make it do so
// <ReflectMethod> in -dumpdep's output; on failure the test names the path
// from main to one of them.
func TestNoMethodLookupByName(t *testing.T) {
	if testing.Short() {
		t.Skip("links the binary")
	}
	cmd := exec.Command("go", "build", "-buildvcs=false", "-ldflags=-dumpdep", "-o", filepath.Join(t.TempDir(), "lkedge"), ".")
	var deps bytes.Buffer
	cmd.Stderr = &deps
	if err := cmd.Run(); err != nil {
		t.Fatalf("go build: %v\n%s", err, tail(deps.Bytes(), 2000))
	}
	callers := map[string][]string{}
	var marked []string
	sc := bufio.NewScanner(&deps)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		from, to, ok := strings.Cut(sc.Text(), " -> ")
		if !ok {
			continue
		}
		if strings.HasSuffix(from, " <ReflectMethod>") {
			from = strings.TrimSuffix(from, " <ReflectMethod>")
			marked = append(marked, from)
		}
		to = strings.TrimSuffix(to, " <ReflectMethod>")
		callers[to] = append(callers[to], from)
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read -dumpdep: %v", err)
	}
	if len(callers) == 0 {
		t.Fatal("-dumpdep printed no edges: the check would pass on anything")
	}
	if len(marked) > 0 {
		t.Errorf("the linker keeps all exported methods, because of %s, reached by:\n%s",
			marked[0], strings.Join(pathFromMain(callers, marked[0]), "\n  -> "))
	}
}

// pathFromMain walks callers back from sym to main.main, breadth first, and
// returns the path it found, main.main first.
func pathFromMain(callers map[string][]string, sym string) []string {
	next := map[string]string{sym: ""}
	queue := []string{sym}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		if s == "main.main" {
			var path []string
			for ; s != ""; s = next[s] {
				path = append(path, s)
			}
			return path
		}
		for _, c := range callers[s] {
			if _, seen := next[c]; !seen {
				next[c] = s
				queue = append(queue, c)
			}
		}
	}
	return []string{sym + " (no path from main.main found)"}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
