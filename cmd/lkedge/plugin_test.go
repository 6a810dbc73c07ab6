package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/lkedge/lkedge/host/plugin/plugintest"
	"github.com/lkedge/lkedge/sdk/sdktest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// asCLI makes the test binary act as the lkedge command, so that tests can
// hand it to sdktest as LKEDGE_BIN without building lkedge.
const asCLI = "LKEDGE_TEST_AS_CLI"

func TestMain(m *testing.M) {
	if os.Getenv(asCLI) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// wasmFile builds the plugin in dir and writes it to a file named after it.
func wasmFile(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), filepath.Base(dir)+".wasm")
	if err := os.WriteFile(path, plugintest.Build(t, dir), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

const events = "../../plugins/testdata/events/"

// meetOn configures the openvidu-webhook plugin with §18's creationDate.
var meetOn = []string{"--config", "enabled=true", "--config", "creation_date=1745318193000"}

func TestPluginRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds plugins")
	}
	openvidu := wasmFile(t, "../../plugins/openvidu-webhook")
	slack := wasmFile(t, "../../plugins/slack")
	tests := []struct {
		name    string
		args    []string
		stdin   string
		wantErr string // "" for success
	}{
		{"signed", append([]string{"--event", events + "egress_ended.json", "--config", "url=https://meet.example.com/hook", "--allow", "config:url", "--secret", "meet_api_key=meet-api-key"}, append(meetOn, openvidu)...), "", ""},
		{"unsigned", append([]string{"--event", events + "egress_ended.json", "--config", "url=https://meet.example.com/hook", "--allow", "config:url"}, append(meetOn, openvidu)...), "", ""},
		{"nothing_to_send", append([]string{"--event", events + "participant_joined.json", "--config", "url=https://meet.example.com/hook", "--allow", "config:url"}, append(meetOn, openvidu)...), "", ""},
		{"stdin", []string{"--event", "-", "--config", "url=https://hooks.slack.com/services/T/B/X", "--allow", "https://hooks.slack.com", slack}, "room_finished_lkedge.json", ""},
		{"plugin_error", append([]string{"--event", events + "egress_ended.json"}, append(meetOn, openvidu)...), "", "the plugin failed (error): openvidu-webhook: config key not set: \"url\""},
		{"json", []string{"--json", "--event", events + "egress_ended_failed.json", "--config", "url=https://hooks.slack.com/services/T/B/X", "--allow", "config:url", slack}, "", ""},
		{"json_error", append([]string{"--json", "--event", events + "egress_ended.json"}, append(meetOn, openvidu)...), "", "the plugin failed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdin io.Reader = strings.NewReader("")
			if tc.stdin != "" {
				b, err := os.ReadFile(events + tc.stdin)
				if err != nil {
					t.Fatal(err)
				}
				stdin = bytes.NewReader(b)
			}
			var out bytes.Buffer
			err := pluginCmd(append([]string{"run"}, tc.args...), stdin, &out)
			if tc.wantErr == "" && err != nil {
				t.Fatal(err)
			}
			if tc.wantErr != "" && (!errors.Is(err, errPluginFailed) || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("error = %v, want one with %q", err, tc.wantErr)
			}
			golden(t, "plugin_run_"+tc.name, out.Bytes())
		})
	}
}

// TestPluginRunJSONIsWhatSdktestReads checks the contract between
// plugin run --json and sdktest.
func TestPluginRunJSONIsWhatSdktestReads(t *testing.T) {
	if testing.Short() {
		t.Skip("builds plugins")
	}
	var out bytes.Buffer
	args := append([]string{"run", "--json", "--event", events + "egress_ended.json", "--config", "url=https://meet.example.com/hook"}, append(meetOn, wasmFile(t, "../../plugins/openvidu-webhook"))...)
	if err := pluginCmd(args, nil, &out); err != nil {
		t.Fatal(err)
	}
	var res sdktest.Output
	dec := json.NewDecoder(&out)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&res); err != nil {
		t.Fatal(err)
	}
	if len(res.Requests) != 1 || res.Requests[0].Sign.Timestamp != "1745318193000" || res.Requests[0].Header("content-type") != "application/json" {
		t.Fatalf("read back %+v", res)
	}
}

func TestPluginRunRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	notJSON := filepath.Join(dir, "event.json")
	if err := os.WriteFile(notJSON, []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	notWasm := filepath.Join(dir, "x.wasm")
	if err := os.WriteFile(notWasm, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"x.wasm"}, "needs --event FILE"},
		{[]string{"--event", notJSON}, "exactly one PLUGIN.wasm"},
		{[]string{"--event", notJSON, "--config", "novalue", "x.wasm"}, `"novalue" is not KEY=VALUE`},
		{[]string{"--event", notJSON, "x.wasm"}, "is not JSON"},
		{[]string{"--event", filepath.Join(dir, "missing.json"), "x.wasm"}, "read event"},
		{[]string{"--event", events + "egress_ended.json", filepath.Join(dir, "missing.wasm")}, "read plugin"},
		{[]string{"--event", events + "egress_ended.json", notWasm}, "not a WebAssembly binary"},
	} {
		err := pluginCmd(append([]string{"run"}, tc.args...), nil, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("plugin run %q: error %v, want one with %q", tc.args, err, tc.want)
		}
	}
}

// meetReceiver accepts only requests signed as OpenVidu Meet signs them
// (spec §8.4) with key, answering status.
type meetReceiver struct {
	mu     sync.Mutex
	bodies []string
	status int
}

func (m *meetReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	mac := hmac.New(sha256.New, []byte("meet-api-key"))
	mac.Write([]byte(r.Header.Get("X-Timestamp") + "." + string(body)))
	if hex.EncodeToString(mac.Sum(nil)) != r.Header.Get("X-Signature") {
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	m.mu.Lock()
	m.bodies = append(m.bodies, string(body))
	m.mu.Unlock()
	w.WriteHeader(m.status)
}

func TestPluginRunSend(t *testing.T) {
	if testing.Short() {
		t.Skip("builds plugins")
	}
	openvidu := wasmFile(t, "../../plugins/openvidu-webhook")
	for _, tc := range []struct {
		name     string
		secret   []string
		status   int
		wantErr  string
		received int
	}{
		{"delivered", []string{"--secret", "meet_api_key=meet-api-key"}, http.StatusOK, "", 1},
		{"wrong secret", []string{"--secret", "meet_api_key=other"}, http.StatusOK, "401 Unauthorized", 0},
		{"receiver fails", []string{"--secret", "meet_api_key=meet-api-key"}, http.StatusInternalServerError, "500 Internal Server Error", 1},
		{"no secret, nothing sent", nil, http.StatusOK, `pass --secret meet_api_key=VALUE`, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recv := &meetReceiver{status: tc.status}
			srv := httptest.NewServer(recv)
			defer srv.Close()
			args := append([]string{"run", "--send", "--event", events + "egress_ended.json", "--config", "url=" + srv.URL, "--allow", "config:url"}, tc.secret...)
			var out bytes.Buffer
			err := pluginCmd(append(args, append(meetOn, openvidu)...), nil, &out)
			if tc.wantErr == "" && err != nil {
				t.Fatal(err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("error = %v, want one with %q", err, tc.wantErr)
			}
			if len(recv.bodies) != tc.received {
				t.Fatalf("receiver accepted %d requests, want %d", len(recv.bodies), tc.received)
			}
			if tc.received == 1 && !strings.HasPrefix(recv.bodies[0], `{"event":"recordingEnded","creationDate":1745318193000,`) {
				t.Errorf("received %s", recv.bodies[0])
			}
		})
	}
}

func TestPluginCheck(t *testing.T) {
	if testing.Short() {
		t.Skip("builds plugins")
	}
	var out bytes.Buffer
	if err := pluginCmd([]string{"check", wasmFile(t, "../../plugins/slack")}, nil, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"an lkedge plugin, ABI v1", "  lkedge_abi_v1() -> ()", "  lkedge_on_event(i32) -> (i32)", "  memory (memory",
		"  lkedge.action_emit_body(i32, i32, i32, i32) -> (i32)", "  wasi_snapshot_preview1.fd_write(", "memory     64 MiB", "timeout    1s per event", "requests   16 per event"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("check output lacks %q:\n%s", want, out.String())
		}
	}
	notWasm := filepath.Join(t.TempDir(), "x.wasm")
	if err := os.WriteFile(notWasm, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ file, want string }{
		{notWasm, "not a WebAssembly binary"},
		{wasmFile(t, "../../host/plugin/testdata/plugins/abiv2"), "plugin speaks ABI v2; this lkedge speaks v1"},
		{filepath.Join(t.TempDir(), "missing.wasm"), "read plugin"},
	} {
		if err := pluginCmd([]string{"check", tc.file}, nil, io.Discard); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("check %s: error %v, want one with %q", tc.file, err, tc.want)
		}
	}
}

// TestPluginNew scaffolds a plugin and takes it the whole way with the Go
// module proxy turned off, as on a machine where the SDK was never
// published: its tests pass natively, it builds to wasm, plugin run runs
// it, and its same tests pass against the .wasm through sdktest and the
// lkedge command.
func TestPluginNew(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go command")
	}
	dir := filepath.Join(t.TempDir(), "notify-me")
	var out bytes.Buffer
	if err := pluginCmd([]string{"new", dir}, nil, &out); err != nil {
		t.Fatal(err)
	}
	goCmd := func(env []string, args ...string) string {
		t.Helper()
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), append([]string{"GOPROXY=off", "GOFLAGS=", "GOWORK=off", "GOTOOLCHAIN=local"}, env...)...)
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, b)
		}
		return string(b)
	}
	goCmd(nil, "vet", "./...")
	goCmd(nil, "test", "-count=1", "./...")
	wasm := filepath.Join(dir, "notify-me.wasm")
	goCmd([]string{"GOOS=wasip1", "GOARCH=wasm"}, "build", "-buildmode=c-shared", "-trimpath", "-ldflags=-s -w", "-o", wasm, ".")

	// The scaffold's own event.json, which its README runs it on.
	out.Reset()
	if err := pluginCmd([]string{"run", "--event", filepath.Join(dir, "event.json"), "--config", "url=https://example.com/hook", wasm}, nil, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "1 request\n\n#1 POST https://example.com/hook\n") ||
		!strings.Contains(out.String(), `{"event":"egress_ended","room":"room-1","status":"EGRESS_COMPLETE","file":"room-1.mp4"}`) {
		t.Errorf("plugin run printed:\n%s", out.String())
	}

	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	res := goCmd([]string{sdktest.EnvWasm + "=" + wasm, sdktest.EnvBin + "=" + self, asCLI + "=1"}, "test", "-count=1", "-v", "./...")
	if !strings.Contains(res, "--- PASS: TestNotifiesWhenARecordingEnds") {
		t.Errorf("the tests against the .wasm did not run:\n%s", res)
	}

	if err := pluginCmd([]string{"new", dir}, nil, io.Discard); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("plugin new over an existing folder: %v", err)
	}
}

// TestSdktestAgainstWasmCatchesABrokenPlugin runs the scaffold's tests
// against a module that does something else: they must fail, or the wasm
// mode would prove nothing.
func TestSdktestAgainstWasmCatchesABrokenPlugin(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go command")
	}
	dir := filepath.Join(t.TempDir(), "p")
	if err := pluginCmd([]string{"new", dir}, nil, io.Discard); err != nil {
		t.Fatal(err)
	}
	other := wasmFile(t, "../../plugins/slack")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "test", "-count=1", "./...")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOPROXY=off", "GOFLAGS=", "GOWORK=off", "GOTOOLCHAIN=local",
		sdktest.EnvWasm+"="+other, sdktest.EnvBin+"="+self, asCLI+"=1")
	b, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(b), "FAIL") {
		t.Fatalf("the scaffold's tests passed against another plugin:\n%s", b)
	}
}

func TestPluginUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "plugin needs a command"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"new"}, "exactly one NAME"},
		{[]string{"new", "Bad Name"}, `plugin name "Bad Name"`},
		{[]string{"check"}, "exactly one PLUGIN.wasm"},
	} {
		if err := pluginCmd(tc.args, nil, io.Discard); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("plugin %q: error %v, want one with %q", tc.args, err, tc.want)
		}
	}
	var out bytes.Buffer
	if err := pluginCmd([]string{"help"}, nil, &out); err != nil || out.String() != pluginUsage {
		t.Errorf("plugin help = %q, %v", out.String(), err)
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs:\n got %s\nwant %s", path, got, want)
	}
}

// TestScaffoldTestsNeedLkedge: against a module, the scaffold's tests run
// through the lkedge binary; when there is none, every test must fail, the
// one expecting an error included, rather than take the missing binary
// for the error it expected.
func TestScaffoldTestsNeedLkedge(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the go command")
	}
	dir := filepath.Join(t.TempDir(), "p")
	if err := pluginCmd([]string{"new", dir}, nil, io.Discard); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "test", "-count=1", "-v", "./...")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOPROXY=off", "GOFLAGS=", "GOWORK=off", "GOTOOLCHAIN=local",
		sdktest.EnvWasm+"="+filepath.Join(dir, "p.wasm"), sdktest.EnvBin+"="+filepath.Join(t.TempDir(), "no-such-lkedge"))
	b, _ := cmd.CombinedOutput()
	for _, test := range []string{"TestNotifiesWhenARecordingEnds", "TestIgnoresOtherEvents", "TestNeedsURL"} {
		if !strings.Contains(string(b), "--- FAIL: "+test+" ") {
			t.Errorf("%s did not fail without an lkedge binary:\n%s", test, b)
		}
	}
}

// TestPluginRunDestinationChecks: plugin run applies the service's
// destination checks. Without an --allow entry naming it, a request is
// listed as refused and --send sends nothing; the metadata address and
// lkedge's own kind of hostile destinations are refused as the service
// refuses them.
func TestPluginRunDestinationChecks(t *testing.T) {
	if testing.Short() {
		t.Skip("builds plugins")
	}
	openvidu := wasmFile(t, "../../plugins/openvidu-webhook")
	recv := &meetReceiver{status: http.StatusOK}
	srv := httptest.NewServer(recv)
	defer srv.Close()
	for _, tc := range []struct {
		name, url string
		extra     []string
		wantOut   string // in the listing
		wantErr   string // of --send; "" = sent
	}{
		{"no allow entry", srv.URL + "/hook", nil, "(the service would refuse it: destination", "is not sent"},
		{"another origin allowed", srv.URL + "/hook", []string{"--allow", "https://meet.example.com"}, "is not in the plugin's allow-list", "is not sent"},
		{"metadata address", "http://169.254.169.254/latest/meta-data/", nil, "(the service would refuse it:", "is not sent"},
		{"allowed", srv.URL + "/hook", []string{"--allow", "config:url"}, "1 request", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(recv.bodies)
			args := append([]string{"run", "--event", events + "egress_ended.json", "--config", "url=" + tc.url, "--secret", "meet_api_key=meet-api-key"}, tc.extra...)
			var out bytes.Buffer
			if err := pluginCmd(append(args, append(meetOn, openvidu)...), nil, &out); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), tc.wantOut) {
				t.Errorf("listing:\n%s\nwant %q", out.String(), tc.wantOut)
			}
			out.Reset()
			err := pluginCmd(append(append([]string{"run", "--send"}, args[1:]...), append(meetOn, openvidu)...), nil, &out)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("--send: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("--send error = %v, want one with %q", err, tc.wantErr)
			}
			sent := len(recv.bodies) - before
			if want := map[bool]int{true: 1, false: 0}[tc.wantErr == ""]; sent != want {
				t.Errorf("%d requests reached the receiver, want %d", sent, want)
			}
		})
	}
}
