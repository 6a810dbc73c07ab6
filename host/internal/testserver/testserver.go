// Package testserver starts the real servers lkedge's integration tests
// talk to — an S3 server (versitygw), LiveKit, Redis for LiveKit, Consul — on
// 127.0.0.1, each on free ports, and stops them when the test ends.
//
// The binaries are built once by `make servers` into .cache/bin, named by
// version, so only a fresh machine pays for the build. A test that needs a
// missing binary fails and says which make target builds it.
package testserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Binary versions; the Makefile builds exactly these names.
const (
	VersityGW = "versitygw-v1.8.0"
	LiveKitV  = "livekit-server-v1.13.5"
)

// Binary returns the path of a cached server binary, failing the test with
// the command that builds it when it is missing. LKEDGE_SERVER_BIN_DIR
// overrides the folder.
func Binary(t testing.TB, name string) string {
	t.Helper()
	dir := os.Getenv("LKEDGE_SERVER_BIN_DIR")
	if dir == "" {
		root, err := moduleRoot()
		if err != nil {
			t.Fatal(err)
		}
		dir = filepath.Join(root, ".cache", "bin")
	}
	path := filepath.Join(dir, name)
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("server binary %s is missing: run `make servers` (it builds the test servers into .cache/bin)", path)
	}
	return path
}

// LookPath finds a system binary such as redis-server, failing the test
// with the make target that installs it.
func LookPath(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not installed: run `make servers` (it installs it with apt-get)", name)
	}
	return p
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("testserver: no go.mod above the working directory")
		}
		dir = parent
	}
}

// skipShort skips tests that need real servers under go test -short.
func skipShort(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs real servers; skipped with -short")
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Process is a started server that can be stopped and started again with the
// same arguments (for outage tests).
type Process struct {
	t     testing.TB
	name  string
	args  []string
	log   string
	ready func() bool

	env []string // the process environment; nil means the test's own

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
}

// Start runs bin with args, logging to a file in the test's temp dir, and
// waits until ready reports true (up to 30 s).
func Start(t testing.TB, bin string, args []string, ready func() bool) *Process {
	t.Helper()
	return StartEnv(t, bin, args, nil, ready)
}

// StartEnv is Start with the process environment env (nil: the test's own).
func StartEnv(t testing.TB, bin string, args, env []string, ready func() bool) *Process {
	t.Helper()
	return startFresh(t, func() (string, []string, []string, func() bool) { return bin, args, env, ready })
}

// Start (re)starts the process and waits until it is ready.
func (p *Process) Start() {
	p.t.Helper()
	if err := p.start(); err != nil {
		p.t.Fatal(err)
	}
}

// errExited reports a server that quit during start-up, typically because
// another process took one of its ports after FreePort chose it.
var errExited = errors.New("exited during start-up")

func (p *Process) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return nil
	}
	logf, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(p.args[0], p.args[1:]...)
	cmd.Env = p.env
	cmd.Stdout, cmd.Stderr = logf, logf
	// The server dies with the test binary, even if the test is killed.
	// Linux sends Pdeathsig when the thread that started the child exits,
	// so the child is started and waited for on one locked thread.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	started := make(chan error)
	exited := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		err := cmd.Start()
		started <- err
		if err == nil {
			_ = cmd.Wait()
		}
		close(exited)
	}()
	err = <-started
	logf.Close()
	if err != nil {
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	p.cmd = cmd
	p.exited = exited
	deadline := time.Now().Add(30 * time.Second)
	for !p.ready() {
		select {
		case <-exited:
			p.cmd = nil
			return fmt.Errorf("%s %w:\n%s", p.name, errExited, p.tail())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after 30 s:\n%s", p.name, p.tail())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// startFresh starts a server whose command line names its ports, and
// starts it again with new ports (from a new call of build) if it exits
// during start-up: tests run in parallel, and a port FreePort chose may be
// taken before the server binds it.
func startFresh(t testing.TB, build func() (bin string, args, env []string, ready func() bool)) *Process {
	t.Helper()
	skipShort(t)
	var err error
	for range 3 {
		bin, args, env, ready := build()
		p := &Process{t: t, name: filepath.Base(bin), args: append([]string{bin}, args...), env: env, log: filepath.Join(t.TempDir(), filepath.Base(bin)+".log"), ready: ready}
		if err = p.start(); err == nil {
			t.Cleanup(p.Stop)
			return p
		}
		if !errors.Is(err, errExited) {
			break
		}
	}
	t.Fatal(err)
	return nil
}

// Stop terminates the process (SIGTERM, then SIGKILL after 5 s).
func (p *Process) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
	}
	p.cmd = nil
}

// tail is the end of the process log, for failure messages.
func (p *Process) tail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// Log returns the whole log of the process so far.
func (p *Process) Log() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// httpReady reports whether url answers at all (any HTTP status).
func httpReady(url string) func() bool {
	return func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		res.Body.Close()
		return true
	}
}

// tcpReady reports whether addr accepts connections.
func tcpReady(addr string) func() bool {
	return func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	}
}

// S3 is a running versitygw S3 gateway over a posix folder.
type S3 struct {
	*Process
	Endpoint  string
	AccessKey string
	SecretKey string
	Dir       string
}

// StartS3 starts versitygw with credentials checked.
func StartS3(t testing.TB) *S3 {
	t.Helper()
	skipShort(t)
	dir := t.TempDir()
	s := &S3{AccessKey: "lkedgetest", SecretKey: "lkedgetestsecret123", Dir: dir}
	bin := Binary(t, VersityGW)
	s.Process = startFresh(t, func() (string, []string, []string, func() bool) {
		addr := "127.0.0.1:" + strconv.Itoa(FreePort(t))
		s.Endpoint = "http://" + addr
		// --keep-alive as S3 behaves: without it versitygw closes every
		// connection after one request, and the tests never reuse one (nor
		// meet a kept one gone stale when the server restarts).
		return bin, []string{"--port", addr, "--access", s.AccessKey, "--secret", s.SecretKey, "--quiet", "--keep-alive", "posix", dir}, nil, httpReady(s.Endpoint)
	})
	return s
}

// Redis is a running redis-server without persistence.
type Redis struct {
	*Process
	Addr string
}

// StartRedis starts a throw-away Redis on a free port.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	skipShort(t)
	r := &Redis{}
	bin, dir := LookPath(t, "redis-server"), t.TempDir()
	r.Process = startFresh(t, func() (string, []string, []string, func() bool) {
		port := strconv.Itoa(FreePort(t))
		r.Addr = "127.0.0.1:" + port
		return bin, []string{"--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no", "--dir", dir}, nil, tcpReady(r.Addr)
	})
	return r
}

// LiveKit is a running livekit-server.
type LiveKit struct {
	*Process
	URL    string // http://127.0.0.1:<port>
	Key    string
	Secret string
}

// StartLiveKit starts a loopback-only LiveKit server that posts its webhooks
// to webhookURL and keeps its state in redis (needed for the egress API).
func StartLiveKit(t testing.TB, webhookURL string, redis *Redis) *LiveKit {
	t.Helper()
	skipShort(t)
	lk := &LiveKit{Key: "devkey", Secret: "secret"}
	bin, dir := Binary(t, LiveKitV), t.TempDir()
	lk.Process = startFresh(t, func() (string, []string, []string, func() bool) {
		port, tcp, udp := FreePort(t), FreePort(t), FreePort(t)
		lk.URL = fmt.Sprintf("http://127.0.0.1:%d", port)
		var cfg bytes.Buffer
		fmt.Fprintf(&cfg, "port: %d\nbind_addresses: [127.0.0.1]\nkeys: {%s: %s}\n", port, lk.Key, lk.Secret)
		fmt.Fprintf(&cfg, "webhook: {api_key: %s, urls: [%q]}\n", lk.Key, webhookURL)
		fmt.Fprintf(&cfg, "rtc: {node_ip: 127.0.0.1, use_external_ip: false, tcp_port: %d, udp_port: %d}\n", tcp, udp)
		if redis != nil {
			fmt.Fprintf(&cfg, "redis: {address: %s}\n", redis.Addr)
		}
		path := filepath.Join(dir, "livekit.yaml")
		if err := os.WriteFile(path, cfg.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		return bin, []string{"--dev", "--config", path}, nil, httpReady(lk.URL)
	})
	return lk
}

// CreateBucket makes a bucket on the S3 server.
func (s *S3) CreateBucket(t testing.TB, name string) {
	t.Helper()
	client := s3.New(s3.Options{
		BaseEndpoint: aws.String(s.Endpoint),
		Region:       "us-east-1",
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, ""),
	})
	if _, err := client.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		t.Fatalf("create bucket %s: %v", name, err)
	}
}

// ConsulV is the Consul agent version the Makefile builds (the last MPL-2.0
// release).
const ConsulV = "consul-1.16.6"

// Consul is a running single-server Consul agent that keeps its state on
// disk, so it can be stopped and started again without losing sessions and
// keys (as a real cluster would not).
type Consul struct {
	*Process
	Addr string // host:port of the HTTP API
}

// StartConsul starts a one-node Consul server on free ports.
func StartConsul(t testing.TB) *Consul {
	t.Helper()
	skipShort(t)
	c := &Consul{}
	bin, dir := Binary(t, ConsulV), t.TempDir()
	c.Process = startFresh(t, func() (string, []string, []string, func() bool) {
		httpPort, serfLAN, server := FreePort(t), FreePort(t), FreePort(t)
		c.Addr = fmt.Sprintf("127.0.0.1:%d", httpPort)
		hcl := fmt.Sprintf(`ports { http = %d, dns = -1, grpc = -1, grpc_tls = -1, serf_lan = %d, serf_wan = -1, server = %d }`, httpPort, serfLAN, server)
		return bin, []string{
			"agent", "-server", "-bootstrap-expect=1", "-data-dir=" + dir, "-node=lkedge-test",
			"-bind=127.0.0.1", "-client=127.0.0.1", "-log-level=warn", "-hcl", hcl,
		}, nil, consulReady(c.Addr)
	})
	return c
}

// consulReady reports whether the agent has elected a leader and
// registered its node: sessions need both ("Missing node registration").
func consulReady(addr string) func() bool {
	get := func(path string) string {
		res, err := http.Get("http://" + addr + path)
		if err != nil {
			return ""
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusOK {
			return ""
		}
		return string(bytes.TrimSpace(b))
	}
	return func() bool {
		leader := get("/v1/status/leader")
		node := get("/v1/catalog/node/lkedge-test")
		return leader != "" && leader != `""` && node != "" && node != "null"
	}
}

// PID is the running process's id (0 when it is not running).
func (p *Process) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Kill ends the process with SIGKILL, as a crash would: nothing is flushed
// or released.
func (p *Process) Kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.exited
	p.cmd = nil
}

var lkedgeBin struct {
	once sync.Once
	path string
	err  error
}

// LKEdge builds cmd/lkedge once per test binary, for tests that run it as
// real processes (replicas, crashes).
func LKEdge(t testing.TB) string {
	t.Helper()
	skipShort(t)
	lkedgeBin.once.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			lkedgeBin.err = err
			return
		}
		dir, err := os.MkdirTemp("", "lkedge-bin-")
		if err != nil {
			lkedgeBin.err = err
			return
		}
		lkedgeBin.path = filepath.Join(dir, "lkedge")
		cmd := exec.Command("go", "build", "-o", lkedgeBin.path, "./cmd/lkedge")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			lkedgeBin.err = fmt.Errorf("go build ./cmd/lkedge: %v\n%s", err, out)
		}
	})
	if lkedgeBin.err != nil {
		t.Fatal(lkedgeBin.err)
	}
	return lkedgeBin.path
}

// LKEdgeProcess is a running `lkedge serve`.
type LKEdgeProcess struct {
	*Process
	URL string
	// AdminURL is its operator API (LKEDGE_ADMIN_LISTEN).
	AdminURL string
}

// StartLKEdge runs `lkedge serve` with env (LKEDGE_LISTEN is set here) and
// waits until /healthz answers.
func StartLKEdge(t testing.TB, env map[string]string) *LKEdgeProcess {
	t.Helper()
	skipShort(t)
	bin := LKEdge(t)
	p := &LKEdgeProcess{}
	p.Process = startFresh(t, func() (string, []string, []string, func() bool) {
		addr := "127.0.0.1:" + strconv.Itoa(FreePort(t))
		p.URL = "http://" + addr
		admin := "127.0.0.1:" + strconv.Itoa(FreePort(t))
		p.AdminURL = "http://" + admin
		vars := []string{"LKEDGE_LISTEN=" + addr, "LKEDGE_ADMIN_LISTEN=" + admin, "LKEDGE_LOG_FORMAT=json", "PATH=" + os.Getenv("PATH")}
		for k, v := range env {
			vars = append(vars, k+"="+v)
		}
		return bin, []string{"serve"}, vars, httpReady(p.URL + "/healthz")
	})
	return p
}
