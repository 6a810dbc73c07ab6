package service

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lkedge/lkedge/host/internal/testserver"
)

// serveEnv is what `lkedge serve` needs besides the settings under test:
// its own data directory and no plugins (an empty plugins file: a file
// LKEDGE_PLUGINS names must exist).
func serveEnv(t *testing.T, kv ...string) []string {
	dir := t.TempDir()
	plugins := filepath.Join(dir, "plugins.yaml")
	if err := os.WriteFile(plugins, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{"PATH=" + os.Getenv("PATH"), "LKEDGE_DATA_DIR=" + dir, "LKEDGE_STORE=file://" + dir,
		"LKEDGE_PLUGINS=" + plugins, "LKEDGE_LOG_FORMAT=text"}
	for i := 0; i < len(kv); i += 2 {
		env = append(env, kv[i]+"="+kv[i+1])
	}
	return env
}

func freeAddr(t *testing.T, host string) string {
	return net.JoinHostPort(host, strconv.Itoa(testserver.FreePort(t)))
}

// TestServeRefusesExposure runs the real binary: a configuration that would
// put the unauthenticated admin API, or the webhook listener with the
// public development key, on the network stops start-up with a message
// naming the setting, and nothing listens.
func TestServeRefusesExposure(t *testing.T) {
	bin := testserver.LKEdge(t)
	prod := []string{"LIVEKIT_API_KEY", "prodkey", "LIVEKIT_API_SECRET", "a-real-secret"}
	anyAdmin, anyWebhook, loopAdmin := freeAddr(t, "0.0.0.0"), freeAddr(t, "0.0.0.0"), freeAddr(t, "127.0.0.1")
	tests := []struct {
		name   string
		closed string // the address that must stay closed
		env    []string
		want   []string
	}{
		{name: "admin API on all interfaces without a token", closed: anyAdmin,
			env:  append([]string{"LKEDGE_LISTEN", freeAddr(t, "127.0.0.1"), "LKEDGE_ADMIN_LISTEN", anyAdmin}, prod...),
			want: []string{"invalid LKEDGE_ADMIN_LISTEN (from environment)", "LKEDGE_ADMIN_TOKEN"}},
		{name: "development key on all interfaces", closed: anyWebhook,
			env:  []string{"LKEDGE_LISTEN", anyWebhook, "LKEDGE_ADMIN_LISTEN", freeAddr(t, "127.0.0.1")},
			want: []string{"invalid LKEDGE_LISTEN (from environment)", "devkey/secret", "LKEDGE_ALLOW_DEV_KEYS=true"}},
		{name: "admin token too short", closed: loopAdmin,
			env:  append([]string{"LKEDGE_LISTEN", freeAddr(t, "127.0.0.1"), "LKEDGE_ADMIN_LISTEN", loopAdmin, "LKEDGE_ADMIN_TOKEN", "hunter2"}, prod...),
			want: []string{"invalid LKEDGE_ADMIN_TOKEN", "16 characters"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, "serve")
			cmd.Env = serveEnv(t, tt.env...)
			out, err := cmd.CombinedOutput()
			if ctx.Err() != nil {
				t.Fatalf("lkedge serve kept running; output:\n%s", out)
			}
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() == 0 {
				t.Fatalf("lkedge serve: %v, want a failed start-up; output:\n%s", err, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("output does not contain %q:\n%s", w, out)
				}
			}
			if strings.Contains(string(out), "hunter2") || strings.Contains(string(out), "a-real-secret") {
				t.Errorf("output echoes a secret:\n%s", out)
			}
			if c, err := net.DialTimeout("tcp", "127.0.0.1:"+portOf(tt.closed), time.Second); err == nil {
				c.Close()
				t.Errorf("something listens on %s after the refusal", tt.closed)
			}
		})
	}
}

// startServe runs `lkedge serve` with env until the test ends and waits
// for its /healthz at url.
func startServe(t *testing.T, env []string, url string) {
	t.Helper()
	cmd := exec.Command(testserver.LKEdge(t), "serve")
	cmd.Env = env
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			t.Fatalf("lkedge serve exited:\n%s", out.String())
		default:
		}
		if res, err := http.Get(url + "/healthz"); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("lkedge serve not ready:\n%s", out.String())
}

// TestAdminToken runs the real binary with both listeners on all
// interfaces, which the operator allowed explicitly: the admin API with a
// token, the development key with LKEDGE_ALLOW_DEV_KEYS=true. Every admin
// request without the right bearer token is 401, replay and pprof
// included, and `lkedge dlq` sends the token it is configured with.
func TestAdminToken(t *testing.T) {
	const token = "f3a1c9e07b6d4e21a8c5"
	listen, admin := freeAddr(t, "0.0.0.0"), freeAddr(t, "0.0.0.0")
	adminURL := "http://127.0.0.1:" + portOf(admin)
	startServe(t, serveEnv(t, "LKEDGE_LISTEN", listen, "LKEDGE_ADMIN_LISTEN", admin, "LKEDGE_ADMIN_TOKEN", token,
		"LKEDGE_ALLOW_DEV_KEYS", "true"), "http://127.0.0.1:"+portOf(listen))

	do := func(method, path, auth string) (int, string) {
		req, _ := http.NewRequest(method, adminURL+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(body)
	}
	for _, tc := range []struct{ method, path, auth string }{
		{"GET", "/dlq", ""},
		{"POST", "/dlq/replay?since=2000-01-01T00:00:00Z", ""},
		{"GET", "/debug/pprof/", ""},
		{"GET", "/debug/pprof/profile?seconds=1", ""},
		{"GET", "/dlq", "Bearer wrong-token-of-some-length"},
		{"GET", "/dlq", "Bearer " + token[:len(token)-1]},
		{"GET", "/dlq", "Bearer " + token + "x"},
		{"GET", "/dlq", "Basic " + token},
		{"GET", "/dlq", token},
		{"GET", "/dlq", "bearer " + token},
		{"GET", "/dlq", "Bearer  " + token},
	} {
		code, body := do(tc.method, tc.path, tc.auth)
		if code != http.StatusUnauthorized {
			t.Errorf("%s %s with %q: %d %q, want 401", tc.method, tc.path, tc.auth, code, body)
		}
		if strings.Contains(body, token) {
			t.Errorf("the answer echoes the token: %q", body)
		}
	}
	if code, body := do("GET", "/dlq", "Bearer "+token); code != http.StatusOK {
		t.Errorf("GET /dlq with the token: %d %q", code, body)
	}
	if code, body := do("POST", "/dlq/replay?since=2000-01-01T00:00:00Z", "Bearer "+token); code != http.StatusOK || !strings.Contains(body, `"replayed": 0`) {
		t.Errorf("replay with the token: %d %q", code, body)
	}

	dlq := func(env ...string) (string, error) {
		cmd := exec.Command(testserver.LKEdge(t), "dlq", "list", "--admin", adminURL)
		cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := dlq("LKEDGE_ADMIN_TOKEN=" + token); err != nil || !strings.Contains(out, "DEAD AT") {
		t.Errorf("lkedge dlq list with the token: %v\n%s", err, out)
	}
	if out, err := dlq(); err == nil || !strings.Contains(out, "401 Unauthorized") {
		t.Errorf("lkedge dlq list without the token: %v\n%s", err, out)
	}
}
