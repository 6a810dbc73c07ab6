// Package service assembles lkedge from its stages and runs it: ingest →
// pipeline → meet → plugins (dispatch) → outbox (deliver), with the embedded defaults — a file store, an
// in-process coordinator and an on-disk journal — so one machine needs no
// other server.
package service

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/livekit/protocol/auth"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"

	"github.com/lkedge/lkedge/host/config"
	"github.com/lkedge/lkedge/host/coord"
	"github.com/lkedge/lkedge/host/coord/consulcoord"
	"github.com/lkedge/lkedge/host/deliver"
	"github.com/lkedge/lkedge/host/dispatch"
	"github.com/lkedge/lkedge/host/egress"
	"github.com/lkedge/lkedge/host/event"
	"github.com/lkedge/lkedge/host/ingest"
	"github.com/lkedge/lkedge/host/journal"
	"github.com/lkedge/lkedge/host/livekitapi"
	"github.com/lkedge/lkedge/host/meet"
	"github.com/lkedge/lkedge/host/metrics"
	"github.com/lkedge/lkedge/host/pipeline"
	"github.com/lkedge/lkedge/host/store"
	"github.com/lkedge/lkedge/host/store/s3store"
	"github.com/lkedge/lkedge/host/webhook"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// JournalPath is where the journal lives under the data directory. An
// underscore cannot start an S3 bucket name, so it never collides with the
// file store's bucket folders when both share one directory.
func JournalPath(dataDir string) string { return filepath.Join(dataDir, "_lkedge", "journal") }

// oldJournalPath is where lkedge kept its journal in a bbolt file before the
// log; Open imports what is left there.
func oldJournalPath(dataDir string) string { return filepath.Join(dataDir, "_lkedge", "journal.db") }

// OutboxPath is where the outbound requests wait under the data directory.
func OutboxPath(dataDir string) string { return filepath.Join(dataDir, "_lkedge", "outbox.db") }

// Service is one running lkedge.
type Service struct {
	cfg      *config.Config
	log      *slog.Logger
	journal  *journal.Journal
	pipeline *pipeline.Pipeline
	server   *fasthttp.Server
	ln       net.Listener
	ingest   *ingest.Handler
	coord    Coordinator
	meet     *meet.Handler
	store    store.Store
	outbox   *deliver.Outbox
	plugins  *dispatch.Dispatcher
	admin    *http.Server
	adminLn  net.Listener
	// unprotect lets plugins reach the listeners' addresses again once
	// they are closed.
	unprotect func()
}

// Coordinator is a coordination backend as the service holds it.
type Coordinator interface {
	coord.Coordinator
	Close() error
}

// Options are the parts tests replace.
type Options struct {
	Logger  *slog.Logger
	Now     func() time.Time // webhook verification clock (default time.Now)
	LiveKit meet.LiveKit     // default: the LiveKit server API at cfg.LiveKitURL
	Sink    pipeline.Sink    // default: the plugins of cfg.PluginsFile
	// Pipeline tunes retries and concurrency.
	Pipeline pipeline.Options
	// JournalFS is the file system under the journal (default the OS's);
	// tests make it fail.
	JournalFS journal.FS
}

// journalBroken is 1 while this process's journal refuses writes after a
// storage failure (it then exits, for its supervisor to restart it).
var journalBroken = prometheus.NewGauge(prometheus.GaugeOpts{
	Name: "lkedge_journal_broken", Help: "1 when the journal stopped writing after a storage failure; lkedge then exits to be restarted.",
})

// New opens the stores and binds the listener; Run serves, and closes
// everything New opened when it returns. ctx bounds the
// start-up checks (the S3 bucket and its conditional writes).
func New(ctx context.Context, cfg *config.Config, opts Options) (*Service, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	st, err := openStore(ctx, cfg)
	if err != nil {
		return nil, err
	}
	lk := opts.LiveKit
	if lk == nil {
		lk = livekitapi.New(cfg.LiveKitURL, cfg.APIKey, cfg.APISecret, 10*time.Second)
	}
	replica, err := ReplicaID(cfg)
	if err != nil {
		return nil, err
	}
	co, err := OpenCoordinator(ctx, cfg, replica, log)
	if err != nil {
		return nil, err
	}
	handler := meet.New(st, co, lk, meet.Options{NameID: cfg.MeetNameID, Subbucket: cfg.S3Subbucket})
	j, err := journal.Open(JournalPath(cfg.DataDir), journal.Options{Logger: log, FS: opts.JournalFS})
	if err != nil {
		co.Close()
		return nil, err
	}
	if n, err := journal.ImportBolt(ctx, j, oldJournalPath(cfg.DataDir)); err != nil {
		// What was imported is safe in the new journal; the rest stays in
		// the old file for an operator, and the service still starts.
		log.Error("importing the previous journal failed", "imported", n, "err", err)
	} else if n > 0 {
		log.Info("imported the previous journal", "records", n)
	}
	secrets := &pluginSecrets{}
	if err := registerMetrics(); err != nil {
		j.Close()
		co.Close()
		return nil, err
	}
	outbox, err := deliver.Open(OutboxPath(cfg.DataDir), deliver.Options{Secrets: secrets, Logger: log, Registerer: metrics.Registry})
	if err != nil {
		j.Close()
		co.Close()
		return nil, err
	}
	plugins, err := dispatch.New(ctx, dispatch.Options{
		Path: cfg.PluginsFile, CacheDir: filepath.Join(cfg.DataDir, "_lkedge", "wasm-cache"),
		Outbox: outbox, Logger: log, Registerer: metrics.Registry,
		Store: st, StorePrefix: cfg.S3Subbucket + "/", DB: outbox.DB(),
		Concurrency: cfg.PluginConcurrency,
	})
	if err != nil {
		outbox.Close()
		j.Close()
		co.Close()
		return nil, err
	}
	secrets.d = plugins
	log.Info("plugins loaded", "file", cfg.PluginsFile, "plugins", plugins.Loaded(), "off_until_configured", plugins.Dormant())
	popts := opts.Pipeline
	sink := opts.Sink
	if sink == nil {
		sink = plugins.Handle
		// A webhook that neither Meet nor a plugin reads is finished when
		// it is recorded: most of LiveKit's webhooks are of rooms lkedge
		// does not own, and coordinating them would be all their cost. The
		// plugins are asked first: a look at their subscriptions is cheaper
		// than reading the room's metadata, which a plugin on every event
		// makes needless.
		popts.Idle = func(ev *event.Event) bool { return !plugins.Receives(ev.Type, false) && handler.NotMeet(ev) }
	}
	popts.Logger = log
	popts.Sequencer, popts.Replica = co, replica
	// Past the pipeline's InMemory, a waiting event is read back from the
	// journal in its turn rather than kept: a full backlog (MaxBacklog)
	// then holds its places, not its webhooks.
	popts.Reload = func(seq uint64) (*event.Event, error) {
		rec, err := j.Read(seq)
		if err != nil {
			return nil, err
		}
		return event.FromWebhook(rec.Body, rec.ReceivedAt)
	}
	if cfg.Consul != nil {
		// With several replicas each sends its own notifications: a room's
		// next event waits until this one's are delivered, so they leave
		// in order (docs/design.md).
		popts.Settle = func(ctx context.Context, ids []string) { settle(ctx, ids, plugins, outbox) }
	}
	p := pipeline.New(handler.Handle, sink, j, popts)
	closeAll := func() {
		_ = plugins.Close(context.Background())
		outbox.Close()
		j.Close()
		co.Close()
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("listen on %s (LKEDGE_LISTEN): %w", cfg.Listen, err)
	}
	adminLn, err := net.Listen("tcp", cfg.AdminListen)
	if err != nil {
		ln.Close()
		closeAll()
		return nil, fmt.Errorf("listen on %s (LKEDGE_ADMIN_LISTEN): %w", cfg.AdminListen, err)
	}
	s := &Service{cfg: cfg, log: log.With("replica", replica), journal: j, pipeline: p, ln: ln, coord: co, meet: handler,
		outbox: outbox, plugins: plugins, adminLn: adminLn, store: st}
	// No plugin request may reach these, whatever its allow-list says.
	releaseLn, releaseAdmin := egress.ProtectListener(ln.Addr()), egress.ProtectListener(adminLn.Addr())
	s.unprotect = func() { releaseLn(); releaseAdmin() }
	s.admin = &http.Server{Handler: requireToken(cfg.AdminToken, adminHandler(outbox, &failedEvents{journal: j, pipeline: p}), log), ReadHeaderTimeout: 10 * time.Second}
	journalBroken.Set(0)
	s.ingest = &ingest.Handler{
		Verifier: webhook.NewVerifier(auth.NewFileBasedKeyProviderFromMap(cfg.Keys), cfg.ClockLeeway, now),
		Journal:  j, Pipeline: p, MaxBody: cfg.MaxBodyBytes, Log: log, Now: time.Now,
	}
	metricsHandler := fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(metrics.Registry, promhttp.HandlerOpts{}))
	s.server = &fasthttp.Server{
		Name:               "lkedge",
		Handler:            s.route(metricsHandler),
		ErrorHandler:       s.ingest.ServerError,
		MaxRequestBodySize: cfg.MaxBodyBytes,
		ReadTimeout:        30 * time.Second,
		WriteTimeout:       30 * time.Second,
		IdleTimeout:        2 * time.Minute,
		Logger:             slogPrintf{log},
	}
	return s, nil
}

// registerMetrics registers the metrics of the stages that keep package
// globals, and the service's own, with the registry /metrics serves.
func registerMetrics() error {
	if err := metrics.Register(metrics.Registry); err != nil {
		return err
	}
	if err := metrics.Registry.Register(journalBroken); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return fmt.Errorf("register metrics: %w", err)
		}
	}
	return nil
}

// unfinished is what settle waits on: the plugin calls and the deliveries
// owed on events.
type unfinished interface {
	Unfinished(eventIDs []string) (int, <-chan struct{})
}

// settle waits until every plugin call and delivery owed on the events is
// finished, or ctx ends. A call finishes only once its requests are in the
// outbox, so the two counts are never both zero too early.
func settle(ctx context.Context, ids []string, calls, deliveries unfinished) {
	for {
		n, callDone := calls.Unfinished(ids)
		m, delivered := deliveries.Unfinished(ids)
		if n+m == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-callDone:
		case <-delivered:
		}
	}
}

// ReplicaID is this replica's name in claims and locks: LKEDGE_REPLICA_ID,
// else an id made once and kept next to the journal. It must not change
// across restarts, because a replayed event is recognized by it.
func ReplicaID(cfg *config.Config) (string, error) {
	if cfg.ReplicaID != "" {
		return cfg.ReplicaID, nil
	}
	path := filepath.Join(cfg.DataDir, "_lkedge", "replica-id")
	if b, err := os.ReadFile(path); err == nil {
		return strings.TrimSpace(string(b)), nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read replica id: %w", err)
	}
	host, _ := os.Hostname()
	id := host + "-" + strings.ToLower(rand.Text()[:8])
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("write replica id: %w", err)
	}
	if err := os.WriteFile(path, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write replica id: %w", err)
	}
	return id, nil
}

// OpenCoordinator opens the configured coordination backend.
func OpenCoordinator(ctx context.Context, cfg *config.Config, replica string, log *slog.Logger) (Coordinator, error) {
	if cfg.Consul == nil {
		return inProcess{coord.NewInProcess(nil)}, nil
	}
	c, err := consulcoord.New(ctx, consulcoord.Options{Address: cfg.Consul.Addr, Token: cfg.Consul.Token, Prefix: cfg.Consul.Prefix, Replica: replica, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("consul at %s (CONSUL_HTTP_ADDR): %w", cfg.Consul.Addr, err)
	}
	return c, nil
}

// inProcess gives the in-process coordinator the Close the service calls.
type inProcess struct{ *coord.InProcess }

func (inProcess) Close() error { return nil }

// openStore opens the configured metadata store.
func openStore(ctx context.Context, cfg *config.Config) (store.Store, error) {
	if cfg.S3 == nil {
		st, err := store.NewFile(cfg.StoreDir, cfg.S3Bucket)
		if err != nil {
			return nil, fmt.Errorf("open file store: %w", err)
		}
		return st, nil
	}
	return s3store.New(ctx, s3store.Options{
		Endpoint: cfg.S3.Endpoint, AccessKey: cfg.S3.AccessKey, SecretKey: cfg.S3.SecretKey,
		Region: cfg.S3.Region, PathStyle: cfg.S3.PathStyle, Bucket: cfg.S3Bucket, ProbePrefix: cfg.S3Subbucket + "/",
	})
}

func (s *Service) route(metricsHandler fasthttp.RequestHandler) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		switch string(ctx.Path()) {
		case ingest.Path, ingest.Path + "/":
			s.ingest.ServeWebhook(ctx)
		case "/healthz":
			ctx.SetBodyString("ok\n")
		case "/readyz":
			s.readyz(ctx)
		case "/metrics":
			metricsHandler(ctx)
		default:
			ctx.Error("not found\n", fasthttp.StatusNotFound)
		}
	}
}

// readyz answers 200 when this replica can do its work now, else 503
// naming what is degraded. Accepting goes on while degraded: events wait
// in the journal until the coordinator is back.
func (s *Service) readyz(ctx *fasthttp.RequestCtx) {
	var problems []string
	if err := s.journal.BrokenErr(); err != nil {
		problems = append(problems, "journal: "+err.Error())
	}
	// Not derived from the request: fasthttp recycles its RequestCtx once
	// the handler returns, while a timed-out child context may still be
	// unlinking itself from its parent.
	pctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := s.coord.Ping(pctx); err != nil {
		problems = append(problems, "coordination: "+err.Error())
	}
	// A read of a key that does not exist proves the store answers.
	if _, err := s.store.Get(pctx, s.cfg.S3Subbucket+"/.lkedge-ready-probe"); err != nil && !errors.Is(err, store.ErrNotFound) {
		problems = append(problems, "store: "+err.Error())
	}
	if s.pipeline.Full() {
		problems = append(problems, fmt.Sprintf("backlog: %d events, at its bound", s.pipeline.Backlog()))
	}
	if len(problems) > 0 {
		ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
		ctx.SetBodyString(strings.Join(problems, "\n") + "\n")
		return
	}
	ctx.SetBodyString("ready\n")
}

// Addr is the address the service listens on.
func (s *Service) Addr() net.Addr { return s.ln.Addr() }

// AdminAddr is the address of the operator API.
func (s *Service) AdminAddr() net.Addr { return s.adminLn.Addr() }

// pluginSecrets lets the outbox, opened before the plugins, resolve their
// secrets.
type pluginSecrets struct{ d *dispatch.Dispatcher }

func (p *pluginSecrets) Secret(plugin, name string) ([]byte, error) { return p.d.Secret(plugin, name) }

// Run replays the events accepted but not finished before the last stop,
// serves until ctx ends, then shuts down gracefully: it stops accepting,
// lets the pipeline finish what it has for up to drain, and closes. What is
// still unfinished stays in the journal for the next start.
func (s *Service) Run(ctx context.Context, drain time.Duration) error {
	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	done := make(chan struct{})
	go func() { s.pipeline.Run(workCtx); close(done) }()
	leading := make(chan struct{})
	go func() { _ = s.coord.Lead(workCtx, "leader", s.leaderWork); close(leading) }()
	sending := make(chan struct{})
	go func() { s.outbox.Run(workCtx); close(sending) }()
	go s.plugins.Run(workCtx)
	trimmed := make(chan struct{})
	go func() { s.trimMemory(workCtx); close(trimmed) }()
	go func() {
		if err := s.admin.Serve(s.adminLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin API stopped", "err", err)
		}
	}()
	if err := s.replay(); err != nil {
		s.log.Error("replay failed", "err", err)
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- s.server.Serve(s.ln) }()

	var err error
	reason := "stopped"
	select {
	case <-ctx.Done():
		reason = context.Cause(ctx).Error()
	case err = <-serveErr:
		reason = fmt.Sprintf("the webhook server stopped: %v", err)
	case <-s.journal.Broken():
		// What reached the disk is unknown after a failed fdatasync; a
		// restart reads it back and replays what is pending (see
		// docs/operations.md, journal recovery).
		journalBroken.Set(1)
		err = fmt.Errorf("the journal is broken, exiting to be restarted: %w", s.journal.BrokenErr())
		reason = err.Error()
	}
	s.log.Info("shutting down: no longer accepting webhooks", "reason", reason)
	if serr := s.server.ShutdownWithContext(context.Background()); serr != nil && err == nil {
		err = serr
	}
	s.pipeline.Close()
	dctx, cancel := context.WithTimeout(context.Background(), drain)
	if s.pipeline.WaitIdle(dctx) != nil {
		s.log.Warn("shutdown: unfinished events stay in the journal for the next start", "backlog", s.pipeline.Backlog())
	}
	if s.plugins.WaitIdle(dctx) != nil {
		s.log.Warn("shutdown: plugin calls not made stay in their file for the next start", "pending", s.plugins.Pending())
	}
	if s.outbox.WaitIdle(dctx) != nil {
		s.log.Warn("shutdown: unsent requests stay in the outbox for the next start", "pending", s.outbox.Pending())
	}
	cancel()
	_ = s.admin.Shutdown(context.Background())
	stopWork()
	<-done
	<-leading
	<-sending
	<-trimmed
	s.unprotect()
	if cerr := errors.Join(s.plugins.Close(context.Background()), s.outbox.Close(), s.journal.Close(), s.coord.Close()); cerr != nil && err == nil {
		err = cerr
	}
	if err != nil {
		s.log.Error("lkedge stopped", "err", err)
	} else {
		s.log.Info("lkedge stopped")
	}
	return err
}

// leaderWork is the periodic work one replica does for all: the orphan
// recording lock collector (§10.5), once at once and then every
// LKEDGE_LOCK_GC_INTERVAL, and pruning old coordination keys.
func (s *Service) leaderWork(ctx context.Context) {
	log := s.log.With("role", "leader")
	log.Info("this replica leads: it runs the orphan-lock collector")
	gc := time.NewTicker(s.cfg.LockGCInterval)
	defer gc.Stop()
	prune := time.NewTicker(time.Minute)
	defer prune.Stop()
	collect := func() {
		if err := s.meet.CollectOrphanLocks(ctx, log); err != nil && ctx.Err() == nil {
			log.Warn("orphan-lock collection stopped", "err", err)
		}
	}
	collect()
	for {
		select {
		case <-ctx.Done():
			return
		case <-gc.C:
			collect()
		case <-prune.C:
			if p, ok := s.coord.(interface{ Prune(context.Context) error }); ok {
				if err := p.Prune(ctx); err != nil && ctx.Err() == nil {
					log.Warn("pruning coordination keys failed", "err", err)
				}
			}
		}
	}
}

// replay queues the events recorded before the last stop and not finished.
func (s *Service) replay() error {
	pending, err := s.journal.Pending()
	if err != nil {
		return fmt.Errorf("read pending events: %w", err)
	}
	for _, rec := range pending {
		ev, err := event.FromWebhook(rec.Body, rec.ReceivedAt)
		if err != nil {
			// It was verified and decoded once; a record that no longer decodes
			// is kept among the failed ones for inspection, not retried.
			_ = s.journal.Fail(context.Background(), rec.Seq, err.Error())
			continue
		}
		if err := s.pipeline.Submit(ev, rec.Seq, true); err != nil {
			return err
		}
	}
	if len(pending) > 0 {
		s.log.Info("replaying events accepted before the last stop", "count", len(pending))
	}
	return nil
}

// slogPrintf routes fasthttp's own log lines into slog.
type slogPrintf struct{ log *slog.Logger }

func (l slogPrintf) Printf(format string, args ...any) {
	if n := len(args); n > 0 {
		if err, ok := args[n-1].(error); ok && errors.Is(err, fasthttp.ErrBodyTooLarge) {
			return // ingest's ServerError answered it with a 413 and logged it
		}
	}
	l.log.Warn(fmt.Sprintf(format, args...), "component", "fasthttp")
}
