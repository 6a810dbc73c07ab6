// Command lkedge receives LiveKit webhooks, runs the OpenVidu Meet recording
// and room logic on them, and hands them to notification plugins.
//
//	lkedge serve [--config FILE]          run the service
//	lkedge send  [--config FILE] [--url URL] FILE
//	                                      sign a webhook body with the configured key and POST it
//	lkedge lock  acquire|release|list ...  the recording locks (with LKEDGE_COORDINATOR=consul)
//	lkedge plugin run|check|new ...        write, test and try plugins (docs/plugins.md)
//	lkedge dlq   list|show|replay ...      dead letters of outbound requests
//	lkedge events failed list|show|retry   events whose processing gave up
//	lkedge version                         module version and commit
//
// Every command and subcommand prints its usage with -h and exits 0.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/lkedge/lkedge/host/config"
	"github.com/lkedge/lkedge/host/ingest"
	"github.com/lkedge/lkedge/host/service"
	"github.com/lkedge/lkedge/host/webhook"
)

const usage = `usage:
  lkedge serve [--config FILE]                 run the service
  lkedge send [--config FILE] [--url URL] FILE sign FILE as LiveKit would and POST it
  lkedge lock acquire [--wait-active D] ROOM   take ROOM's recording lock (6 h), as Meet's
                                               start-recording does; with --wait-active,
                                               wait up to D for the recording_active event
  lkedge lock release [--force] ROOM           release it unless LiveKit reports an active
                                               egress in ROOM (--force: release anyway)
  lkedge lock list                             list the recording locks
  lkedge plugin run|check|new ...              write, check and try plugins without the
                                               service (lkedge plugin help; docs/plugins.md)
  lkedge dlq list [--since T] [--limit N] [--json]
                                               requests that failed every attempt
  lkedge dlq show ID                           one of them, in full
  lkedge dlq replay ID | --since T             send them again (T: RFC 3339 or e.g. 2h)
  lkedge events failed list [--json]           events whose processing used up its attempts
  lkedge events failed show ID                 one of them, with its webhook
  lkedge events failed retry ID                process it again
  lkedge version                               module version and commit
` + "`" + `lkedge lock` + "`" + ` needs LKEDGE_COORDINATOR=consul: the in-process coordinator
lives inside one lkedge process.

Settings come from FILE (default ./lkedge.yaml if present) and the environment;
see README.md for the list.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "send":
		err = send(os.Args[2:], os.Stdout)
	case "lock":
		err = lock(os.Args[2:], os.Stdout)
	case "plugin":
		err = pluginCmd(os.Args[2:], os.Stdin, os.Stdout)
	case "dlq":
		err = dlq(os.Args[2:], os.Stdout)
	case "events":
		err = eventsCmd(os.Args[2:], os.Stdout)
	case "version":
		err = version(os.Args[2:], os.Stdout)
	case "help", "-h", "-help", "--help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "lkedge: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if errors.Is(err, flag.ErrHelp) {
		return // the usage asked for is printed
	}
	if errors.Is(err, errLogged) {
		os.Exit(1) // its last log line says why; a plain line after it would break a JSON log
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "lkedge:", err)
		os.Exit(1)
	}
}

// isHelp reports whether args ask for a command's usage.
func isHelp(args []string) bool {
	return len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help")
}

// help prints text as the usage asked for and returns flag.ErrHelp, which
// main turns into exit status 0.
func help(out io.Writer, text string) error {
	fmt.Fprint(out, text)
	return flag.ErrHelp
}

// parseFlags parses args into fs. Asked for with -h, the usage (synopsis
// and flags) goes to stdout and flag.ErrHelp is returned; a bad flag is an
// error carrying the same usage.
func parseFlags(fs *flag.FlagSet, synopsis string, args []string) error {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	err := fs.Parse(args)
	if err == nil {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "usage: %s\n", synopsis)
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		b.WriteString("\noptions:\n")
		fs.SetOutput(&b)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	if errors.Is(err, flag.ErrHelp) {
		return help(os.Stdout, b.String())
	}
	return fmt.Errorf("%w\n\n%s", err, b.String())
}

// synopses are the usage lines of the commands that take flags, by the
// name loadConfig gets.
var synopses = map[string]string{
	"serve":               "lkedge serve [--config FILE]",
	"send":                "lkedge send [--config FILE] [--url URL] FILE",
	"lock acquire":        "lkedge lock acquire [--config FILE] [--wait-active D] ROOM",
	"lock release":        "lkedge lock release [--config FILE] [--force] ROOM",
	"lock list":           "lkedge lock list [--config FILE]",
	"dlq list":            "lkedge dlq list [--config FILE] [--admin URL] [--since T] [--limit N] [--json]",
	"dlq show":            "lkedge dlq show [--config FILE] [--admin URL] ID",
	"dlq replay":          "lkedge dlq replay [--config FILE] [--admin URL] ID | --since T",
	"events failed list":  "lkedge events failed list [--config FILE] [--admin URL] [--json]",
	"events failed show":  "lkedge events failed show [--config FILE] [--admin URL] ID",
	"events failed retry": "lkedge events failed retry [--config FILE] [--admin URL] ID",
}

// loadConfig parses the common --config flag plus the command's own flags.
func loadConfig(name string, args []string, more func(*flag.FlagSet)) (*config.Config, *flag.FlagSet, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	path := fs.String("config", "", "YAML settings file (default ./lkedge.yaml if present)")
	if more != nil {
		more(fs)
	}
	if err := parseFlags(fs, synopses[name], args); err != nil {
		return nil, nil, err
	}
	file, required := *path, true
	if file == "" {
		file, required = "lkedge.yaml", false
	}
	cfg, err := config.Load(file, required, os.LookupEnv)
	return cfg, fs, err
}

func newLogger(cfg *config.Config) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel)) // validated by config
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: durationText}
	format := cfg.LogFormat
	if format == "auto" {
		format = "json"
		if fi, err := os.Stderr.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			format = "text"
		}
	}
	if format == "text" {
		return slog.New(slog.NewTextHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, opts))
}

// durationText writes durations as Go does ("30s"), not as the JSON
// handler's nanoseconds.
func durationText(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		return slog.String(a.Key, a.Value.Duration().String())
	}
	return a
}

func serve(args []string) error {
	cfg, fs, err := loadConfig("serve", args, nil)
	if err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("serve takes no arguments, got %q", fs.Args())
	}
	log := newLogger(cfg)
	slog.SetDefault(log)
	tuneGC(os.LookupEnv)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	startCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	svc, err := service.New(startCtx, cfg, service.Options{Logger: log})
	cancel()
	if err != nil {
		return err
	}
	attrs := []any{
		"webhook_url", "http://" + publicAddr(svc.Addr().String()) + ingest.Path,
		"api_key", cfg.APIKey, "livekit_url", cfg.LiveKitURL, "store", storeName(cfg), "data_dir", cfg.DataDir,
	}
	if cfg.APIKey == "devkey" && cfg.APISecret == "secret" {
		attrs = append(attrs, "api_secret", cfg.APISecret, "note", "development keys: set LIVEKIT_API_KEY and LIVEKIT_API_SECRET for production")
	}
	log.Info("lkedge is up: point LiveKit's webhook at webhook_url", attrs...)
	if err := svc.Run(ctx, 10*time.Second); err != nil {
		return fmt.Errorf("%w: %w", errLogged, err)
	}
	return nil
}

// errLogged marks a failure the service's log already reports (Run ends
// with "lkedge stopped" and the error): main exits 1 without repeating it.
var errLogged = errors.New("logged")

func storeName(cfg *config.Config) string {
	if cfg.S3 != nil {
		return "s3://" + cfg.S3Bucket + "/" + cfg.S3Subbucket + " at " + cfg.S3.Endpoint
	}
	return "file://" + cfg.StoreDir
}

// publicAddr turns a listen address into one a client on this machine can
// reach ("[::]:6080" → "127.0.0.1:6080").
func publicAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

func send(args []string, out io.Writer) error {
	var url string
	cfg, fs, err := loadConfig("send", args, func(fs *flag.FlagSet) {
		fs.StringVar(&url, "url", "", "webhook endpoint (default: this configuration's LKEDGE_LISTEN on 127.0.0.1)")
	})
	if err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("send needs exactly one FILE (a LiveKit webhook body)")
	}
	body, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return fmt.Errorf("read webhook body: %w", err)
	}
	if url == "" {
		url = "http://" + publicAddr(cfg.Listen) + ingest.Path
	}
	token, err := webhook.Sign(body, cfg.APIKey, cfg.APISecret, time.Now())
	if err != nil {
		return err
	}
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("--url %q: %w", url, err)
	}
	req.Header.Set("Content-Type", "application/webhook+json")
	req.Header.Set("Authorization", token)
	client := &http.Client{Timeout: 30 * time.Second}
	res, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("post webhook: %w", err)
	}
	defer res.Body.Close()
	reply, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
	fmt.Fprintf(out, "%s %s\n", res.Status, bytes.TrimSpace(reply))
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("lkedge answered %s", res.Status)
	}
	return nil
}
