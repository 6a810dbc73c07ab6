// Package dispatch is the plugin stage of the pipeline: it keeps the
// plugins listed in plugins.yaml loaded (reloading them when the file or a
// module changes) and gives each processed event to the plugins that
// subscribed to it. The pipeline's sink only records, durably, which
// plugin owes a call on which event; each plugin's own workers then make
// the calls and store the requests they return in the outbox, so a slow or
// failing plugin holds up only itself.
package dispatch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tetratelabs/wazero"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/sync/semaphore"

	"github.com/lkedge/lkedge/host/deliver"
	"github.com/lkedge/lkedge/host/egress"
	"github.com/lkedge/lkedge/host/event"
	"github.com/lkedge/lkedge/host/plugin"
	"github.com/lkedge/lkedge/host/pluginconf"
	"github.com/lkedge/lkedge/host/store"
)

// Outbox is where the requests plugins ask for are stored durably.
type Outbox interface {
	Enqueue(ctx context.Context, ds []deliver.Delivery) error
}

// Options configure a Dispatcher.
type Options struct {
	// Path is plugins.yaml. A missing file means no plugins.
	Path string
	// CacheDir keeps compiled plugins across restarts ("" = memory only).
	CacheDir string
	Outbox   Outbox
	Logger   *slog.Logger
	// Poll is how often the file and the modules are checked for changes
	// (default 2 s).
	Poll time.Duration
	// Registerer receives the plugin metrics (nil = not registered).
	Registerer prometheus.Registerer
	// Store holds the objects of config values read from the store
	// (pluginconf.StoreValue), under StorePrefix (the Meet sub-bucket and
	// a slash); StoreTTL is how long a read is reused (default 5 s).
	Store       store.Store
	StorePrefix string
	StoreTTL    time.Duration
	// DB keeps the plugin calls owed on events until they are made, in
	// buckets of their own: the outbox's file (deliver.Outbox.DB), so that
	// the sink's write shares its commits with the outbox's. The
	// Dispatcher does not close it. When DB is nil the file Tasks is
	// opened (and closed) instead; one of them is required.
	DB    *bolt.DB
	Tasks string
	// Concurrency bounds the plugin calls running at once, all plugins
	// together, so that wasm never takes every core from accepting
	// webhooks (default max(1, GOMAXPROCS-1)). One plugin has at most
	// Concurrency calls in flight, and with more than one plugin loaded
	// at most Concurrency-1.
	Concurrency int
	// PauseFor is how long a plugin is paused after its calls crashed or
	// ran out of time five times in a row (default 30 s; doubling while it
	// keeps failing). Its calls are skipped meanwhile, or wait under
	// failure: hold.
	PauseFor time.Duration
	// MaxQueued bounds one plugin's pending calls; past it the plugin does
	// not get new events (default 10 000).
	MaxQueued int
	// HoldAttempts is how often a call of a plugin with failure: hold is
	// tried before it is kept as a failed task (default 5); HoldBackoff
	// the first wait between tries, doubling up to a minute (default 1 s).
	HoldAttempts int
	HoldBackoff  time.Duration
	// FinishedInterval is how long a finished call's task may wait before
	// it leaves the file in a commit of its own, when no sink's commit took
	// it along first (default 100 ms).
	FinishedInterval time.Duration
}

const (
	defaultMaxQueued        = 10000
	defaultHoldAttempts     = 5
	defaultHoldBackoff      = time.Second
	maxHoldBackoff          = time.Minute
	defaultFinishedInterval = 100 * time.Millisecond
)

// callAttempts is how often a failed plugin call is tried, each time in a
// fresh instance, before its failure policy applies: a timeout under a
// CPU spike deserves a second chance, a deterministic crash does not
// deserve more.
const callAttempts = 2

// Dispatcher runs the plugin stage. It is safe for concurrent use.
type Dispatcher struct {
	opts    Options
	log     *slog.Logger
	cache   wazero.CompilationCache
	current atomic.Pointer[set]
	// secrets keeps every plugin's secret references, also of plugins since
	// removed, so that their stored requests can still be signed.
	secretsMu sync.RWMutex
	secrets   map[string]map[string]pluginconf.SecretRef
	reloadMu  sync.Mutex
	stamp     string // what the files looked like at the last load
	m         *metrics
	storeCfg  *storeConfig

	// The task queues (tasks.go). ctx ends the workers at Close.
	db    *bolt.DB
	ownDB bool                // opened from Options.Tasks, so closed by Close
	slots *semaphore.Weighted // the Concurrency bound
	// slotWaiters counts the calls waiting for a slot, which a running call
	// lets go first at its next look at the clock.
	slotWaiters atomic.Int32
	ctx         context.Context
	cancel      context.CancelFunc
	wg          sync.WaitGroup

	mu      sync.Mutex // guards the queues and counts below
	queues  map[string]*queue
	seq     uint64
	pending int
	nFailed int                // tasks kept in the failed bucket
	idle    chan struct{}      // closed and replaced when pending drops to 0
	byEvent map[string]int     // pending calls per event id
	health  map[string]*health // plugins whose calls keep failing (crashloop.go)
	removed chan struct{}      // closed and replaced when a call finishes
	closed  bool

	finishedMu sync.Mutex
	finished   []*task // to be removed from the file (flushFinished)
	stopFlush  chan struct{}
	flushDone  chan struct{}
}

// set is one consistent generation of loaded plugins.
type set struct {
	plugins []*loaded
}

type loaded struct {
	conf pluginconf.Plugin
	// p is nil while the plugin is off until configured: a config key it
	// requires had no value when it was last loaded, so it is neither
	// compiled nor instantiated (see Dispatcher.load).
	p        *plugin.Plugin
	sum      string // module sha256
	storeCfg *storeConfig
}

// New loads plugins.yaml and every plugin in it. At start-up any error is
// fatal, so a mistake is seen at once rather than at the first event.
func New(ctx context.Context, opts Options) (*Dispatcher, error) {
	if opts.Poll <= 0 {
		opts.Poll = 2 * time.Second
	}
	if opts.DB == nil && opts.Tasks == "" {
		return nil, errors.New("plugins: no task file")
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = max(1, runtime.GOMAXPROCS(0)-1)
	}
	if opts.PauseFor <= 0 {
		opts.PauseFor = crashLoopCooldown
	}
	if opts.MaxQueued <= 0 {
		opts.MaxQueued = defaultMaxQueued
	}
	if opts.HoldAttempts <= 0 {
		opts.HoldAttempts = defaultHoldAttempts
	}
	if opts.HoldBackoff <= 0 {
		opts.HoldBackoff = defaultHoldBackoff
	}
	if opts.FinishedInterval <= 0 {
		opts.FinishedInterval = defaultFinishedInterval
	}
	d := &Dispatcher{opts: opts, log: opts.Logger, secrets: map[string]map[string]pluginconf.SecretRef{}, m: newMetrics(opts.Registerer),
		slots: semaphore.NewWeighted(int64(opts.Concurrency)), queues: map[string]*queue{}, idle: make(chan struct{}),
		byEvent: map[string]int{}, removed: make(chan struct{}), health: map[string]*health{}}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	if d.log == nil {
		d.log = slog.Default()
	}
	if opts.Store != nil {
		if opts.StoreTTL <= 0 {
			opts.StoreTTL = 5 * time.Second
		}
		d.storeCfg = &storeConfig{st: opts.Store, prefix: opts.StorePrefix, ttl: opts.StoreTTL, cache: map[string]cachedObject{}}
	}
	if opts.CacheDir != "" {
		c, err := wazero.NewCompilationCacheWithDir(opts.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("plugin compilation cache: %w", err)
		}
		d.cache = c
	} else {
		d.cache = wazero.NewCompilationCache()
	}
	d.current.Store(&set{})
	if err := d.reload(ctx, true); err != nil {
		_ = d.cache.Close(ctx)
		return nil, err
	}
	if err := d.openTasks(); err != nil {
		_ = d.Close(ctx)
		return nil, err
	}
	d.stopFlush, d.flushDone = make(chan struct{}), make(chan struct{})
	go d.flushLoop(d.stopFlush, d.flushDone)
	return d, nil
}

// Run reloads plugins when plugins.yaml or a module changes, until ctx
// ends.
func (d *Dispatcher) Run(ctx context.Context) {
	t := time.NewTicker(d.opts.Poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := d.reload(ctx, false); err != nil {
				d.log.Error("plugins not reloaded; the running versions stay", "err", err)
			}
		}
	}
}

// Close stops the workers and every plugin after the calls in flight; the
// calls not made stay in the task file for the next start.
func (d *Dispatcher) Close(ctx context.Context) error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	d.mu.Unlock()
	d.cancel()
	d.wg.Wait()
	old := d.current.Swap(&set{})
	var errs []error
	for _, l := range old.plugins {
		errs = append(errs, l.close(ctx))
	}
	errs = append(errs, d.cache.Close(ctx))
	if d.stopFlush != nil {
		close(d.stopFlush)
		<-d.flushDone
		d.flushFinished()
	}
	if d.ownDB {
		errs = append(errs, d.db.Close())
	}
	return errors.Join(errs...)
}

// Shrink closes, in every plugin, the idle instances beyond one that have
// been idle for at least idleFor (plugin.Plugin.Shrink), and returns how
// many it closed.
func (d *Dispatcher) Shrink(idleFor time.Duration) int {
	n := 0
	for _, l := range d.current.Load().plugins {
		if l.p != nil {
			n += l.p.Shrink(1, idleFor)
			d.m.instances.WithLabelValues(l.conf.Name).Set(float64(l.p.Instances()))
		}
	}
	return n
}

// Receives reports whether a plugin of the current set subscribed to
// events of type typ in a room Meet owns or not, a plugin off until
// configured included: its config may arrive before the event is handled.
func (d *Dispatcher) Receives(typ string, meetOwned bool) bool {
	for _, l := range d.current.Load().plugins {
		if l.conf.Receives(typ, meetOwned) {
			return true
		}
	}
	return false
}

// Loaded lists the names of the running plugins, those off until
// configured left out.
func (d *Dispatcher) Loaded() []string { return d.current.Load().names(false) }

// Dormant lists the names of the plugins off until configured: neither
// compiled nor instantiated until the config keys they require have a
// value.
func (d *Dispatcher) Dormant() []string { return d.current.Load().names(true) }

// stamp summarizes files a load depends on: cheap to compute every poll,
// and different whenever an edit could matter. A file is stamped before it
// is read: stamped after, an edit landing between the read and the stamp
// would never be loaded (a poll that read the old plugins.yaml and stamped
// the new one kept the old version until the next edit).
func stamp(paths ...string) string {
	var b bytes.Buffer
	for _, path := range paths {
		if st, err := os.Stat(path); err == nil {
			fmt.Fprintf(&b, "%s|%d|%d;", path, st.Size(), st.ModTime().UnixNano())
		} else {
			fmt.Fprintf(&b, "%s|missing;", path)
		}
	}
	return b.String()
}

func wasmPaths(f *pluginconf.File) []string {
	var paths []string
	if f != nil {
		for _, p := range f.Plugins {
			paths = append(paths, p.Wasm)
		}
	}
	return paths
}

// reload reads the file and loads what changed. At start-up (strict) any
// error fails; later, a plugin that does not load keeps its running
// version.
func (d *Dispatcher) reload(ctx context.Context, strict bool) error {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	cur := d.current.Load()
	confStamp := stamp(d.opts.Path)
	if !strict && d.stamp == confStamp+stamp(wasmPaths(cur.file())...) && !cur.woken(ctx) {
		return nil
	}
	f, err := d.readFile()
	if err != nil {
		// Do not retry until the files change again.
		d.stamp = confStamp + stamp(wasmPaths(cur.file())...)
		d.m.reloads.WithLabelValues("failed").Inc()
		return err
	}
	stamped := confStamp + stamp(wasmPaths(f)...) // before load reads the modules
	next := &set{}
	var errs []error
	var retired []*loaded
	compiled := false
	for _, conf := range f.Plugins {
		old := cur.find(conf.Name)
		l, err := d.load(ctx, conf, old)
		switch {
		case err == nil:
			compiled = compiled || (l != old && l.p != nil)
			next.plugins = append(next.plugins, l)
			if old != nil && old != l {
				retired = append(retired, old)
			}
		case old != nil && !strict:
			// Reported once with the rest of the reload, below.
			next.plugins = append(next.plugins, old)
			errs = append(errs, fmt.Errorf("plugin %s keeps its running version: %w", conf.Name, err))
		default:
			errs = append(errs, err)
		}
	}
	if strict && len(errs) > 0 {
		for _, l := range next.plugins {
			_ = l.close(ctx)
		}
		return errors.Join(errs...)
	}
	for _, l := range cur.plugins {
		if next.find(l.conf.Name) == nil {
			retired = append(retired, l)
		}
	}
	d.current.Store(next)
	d.stamp = stamped
	if compiled {
		// Loading a plugin leaves tens of MB of garbage (decoding,
		// compiling or reading the cache, starting its first instance)
		// that the heap would otherwise keep, unreturned, until it had
		// grown twice as large again: an idle service would hold it for
		// good. One collection here returns it, for a few milliseconds per
		// reload.
		debug.FreeOSMemory()
	}
	d.m.loaded.Set(float64(len(next.live())))
	if d.db != nil {
		d.dropRemoved()
		d.mu.Lock()
		d.pumpLocked() // a new version may allow more at once
		d.mu.Unlock()
	}
	for _, l := range retired {
		go func() {
			// Calls in flight finish on the old version.
			if err := l.close(context.Background()); err != nil {
				d.log.Warn("closing a replaced plugin", "plugin", l.conf.Name, "err", err)
			}
		}()
	}
	if !strict {
		if len(errs) > 0 {
			// One line says it all; Run does not log it again.
			d.m.reloads.WithLabelValues("partial").Inc()
			d.log.Error("plugins reloaded in part: a plugin that failed to load keeps its running version",
				"plugins", next.names(false), "off_until_configured", next.names(true), "replaced", len(retired), "err", errors.Join(errs...))
			return nil
		}
		d.m.reloads.WithLabelValues("ok").Inc()
		d.log.Info("plugins reloaded", "plugins", next.names(false), "off_until_configured", next.names(true), "replaced", len(retired))
	}
	return errors.Join(errs...)
}

func (d *Dispatcher) readFile() (*pluginconf.File, error) {
	if _, err := os.Stat(d.opts.Path); errors.Is(err, os.ErrNotExist) {
		return &pluginconf.File{}, nil
	}
	return pluginconf.Load(d.opts.Path)
}

func (s *set) find(name string) *loaded {
	for _, l := range s.plugins {
		if l.conf.Name == name {
			return l
		}
	}
	return nil
}

// wokenWait bounds the store reads of one look at the plugins off until
// configured, so that a store that hangs cannot stall reloads.
const wokenWait = 5 * time.Second

// woken tells whether a plugin off until configured is configured now. A
// store-backed key is read at most every StoreTTL, as for calls.
func (s *set) woken(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, wokenWait)
	defer cancel()
	for _, l := range s.plugins {
		if l.p == nil && l.configured(ctx) {
			return true
		}
	}
	return false
}

// live is the running plugins, those off until configured left out.
func (s *set) live() []*loaded {
	var out []*loaded
	for _, l := range s.plugins {
		if l.p != nil {
			out = append(out, l)
		}
	}
	return out
}

// names lists the running plugins (dormant false) or those off until
// configured (dormant true).
func (s *set) names(dormant bool) []string {
	n := []string{} // logged: [] rather than null when there are none
	for _, l := range s.plugins {
		if (l.p == nil) == dormant {
			n = append(n, l.conf.Name)
		}
	}
	return n
}

// file rebuilds the list of modules of the running set, for the stamp.
func (s *set) file() *pluginconf.File {
	f := &pluginconf.File{}
	for _, l := range s.plugins {
		f.Plugins = append(f.Plugins, l.conf)
	}
	return f
}

// load returns old when neither its entry nor its module changed, else a
// newly compiled version.
func (d *Dispatcher) load(ctx context.Context, conf pluginconf.Plugin, old *loaded) (*loaded, error) {
	wasm, err := os.ReadFile(conf.Wasm)
	if err != nil {
		return nil, fmt.Errorf("plugin %s: wasm: %w", conf.Name, err)
	}
	sum := sha256.Sum256(wasm)
	hexsum := hex.EncodeToString(sum[:])
	if conf.SHA256 != "" && conf.SHA256 != hexsum {
		return nil, fmt.Errorf("plugin %s: sha256: %s has sha256 %s, plugins.yaml pins %s", conf.Name, conf.Wasm, hexsum, conf.SHA256)
	}
	unchanged := old != nil && old.sum == hexsum && sameConf(old.conf, conf)
	if unchanged && (old.p != nil || !old.configured(ctx)) {
		// A running plugin whose required keys lost their value stays
		// compiled: its calls already owed are made, its new events
		// skipped (Handle).
		return old, nil
	}
	// Checked here so that a bad entry fails the load, not every request.
	if _, err := egress.ParseAllowlist(conf.Allow); err != nil {
		return nil, fmt.Errorf("plugin %s: allow: %w", conf.Name, err)
	}
	l := &loaded{conf: conf, sum: hexsum, storeCfg: d.storeCfg}
	if !l.configured(ctx) {
		// Off until configured: a plugin listed by default but not turned
		// on costs no compiled code (about 13 MiB for a Go plugin) and no
		// instance. Run compiles it at its first poll after its keys get a
		// value.
		return l, nil
	}
	p, err := plugin.Load(ctx, wasm, plugin.Options{
		Name:        conf.Name,
		Limits:      plugin.Limits(conf.Limits),
		Config:      conf.Config,
		Lookup:      l.lookup,
		CheckAction: l.check,
		Cache:       d.cache,
		// Next to the compiled code, so a restart neither compiles nor
		// validates again.
		ValidatedDir: validatedDir(d.opts.CacheDir),
		Logger:       d.log,
	})
	if err != nil {
		return nil, err
	}
	l.p = p
	d.secretsMu.Lock()
	d.secrets[conf.Name] = conf.Secrets
	d.secretsMu.Unlock()
	return l, nil
}

// close stops the plugin, if it was compiled.
func (l *loaded) close(ctx context.Context) error {
	if l.p == nil {
		return nil
	}
	return l.p.Close(ctx)
}

func validatedDir(cacheDir string) string {
	if cacheDir == "" {
		return ""
	}
	return filepath.Join(cacheDir, "validated")
}

func sameConf(a, b pluginconf.Plugin) bool {
	return fmt.Sprintf("%#v", a) == fmt.Sprintf("%#v", b)
}

// check vets an action as the plugin emits it, so that the plugin learns
// at once and its call fails naming it: a signing secret must be one it
// was given, and the request must pass the outbox's own validation
// (deliver.Validate), allow-list included. The event is not known here;
// the request is checked again with its id when it is stored.
func (l *loaded) check(a *plugin.Action) error {
	if a.Sign != nil {
		if _, ok := l.conf.Secrets[a.Sign.Secret]; !ok {
			return fmt.Errorf("secret %q is not one of this plugin's secrets in plugins.yaml", a.Sign.Secret)
		}
	}
	return deliver.Validate(delivery("", "", l.conf, l.allowed(context.Background()), 0, *a))
}

// Secret resolves a plugin's secret by name when a request is signed.
func (d *Dispatcher) Secret(pluginName, name string) ([]byte, error) {
	d.secretsMu.RLock()
	ref, ok := d.secrets[pluginName][name]
	d.secretsMu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("plugin %s has no secret %q", pluginName, name)
	}
	v, err := ref.Value()
	if err != nil {
		return nil, fmt.Errorf("plugin %s secret %s: %w", pluginName, name, err)
	}
	return v, nil
}

// Handle is the pipeline's sink: it records, in one durable write, a call
// owed by each subscribed plugin on each event, and returns. The plugins'
// workers make the calls; a plugin's calls on one order key (a room, an
// egress) are made, and their requests stored, in the order Handle
// received the events.
func (d *Dispatcher) Handle(ctx context.Context, events []*event.Event, log *slog.Logger) error {
	s := d.current.Load()
	if len(s.plugins) == 0 {
		return nil
	}
	var ts []*task
	for _, ev := range events {
		owned := ev.Meet != nil && ev.Meet.Owned
		var body []byte
		for _, l := range s.plugins {
			if !l.conf.Receives(ev.Type, owned) {
				if log.Enabled(ctx, slog.LevelDebug) {
					reason := "not subscribed to this event type (events)"
					if l.conf.Rooms == pluginconf.RoomsMeet && !owned && l.conf.Receives(ev.Type, true) {
						reason = "rooms: meet, and OpenVidu Meet does not own this room"
					}
					log.Debug("plugin not called", "plugin", l.conf.Name, "reason", reason)
				}
				continue
			}
			if l.p == nil || !l.configured(ctx) {
				// Configured since the last poll, a dormant plugin is not
				// compiled yet: its events until the next are skipped too.
				log.Debug("plugin not called", "plugin", l.conf.Name, "reason", "a config key it requires has no value yet (requires)")
				continue
			}
			if body == nil {
				var err error
				if body, err = ev.MarshalJSON(); err != nil {
					return fmt.Errorf("encode event %s for plugins: %w", ev.ID, err)
				}
			}
			ts = append(ts, &task{rec: taskRecord{Plugin: l.conf.Name, EventID: ev.ID, Key: ev.OrderKey(), Body: body}})
		}
	}
	if len(ts) == 0 {
		return nil
	}
	return d.add(ts, log)
}

func (d *Dispatcher) call(ctx context.Context, l *loaded, body []byte, log *slog.Logger) ([]plugin.Action, error) {
	var err error
	for attempt := 1; attempt <= callAttempts; attempt++ {
		start := time.Now()
		var actions []plugin.Action
		actions, err = l.p.Call(ctx, body, log)
		d.m.seconds.WithLabelValues(l.conf.Name).Observe(time.Since(start).Seconds())
		d.m.instances.WithLabelValues(l.conf.Name).Set(float64(l.p.Instances()))
		if err == nil {
			d.m.calls.WithLabelValues(l.conf.Name, "ok").Inc()
			return actions, nil
		}
		kind := "error"
		var ce *plugin.CallError
		if errors.As(err, &ce) {
			kind = ce.Kind
		}
		d.m.calls.WithLabelValues(l.conf.Name, kind).Inc()
		log.Warn("plugin call failed", "plugin", l.conf.Name, "attempt", attempt, "kind", kind, "err", err)
		if errors.Is(err, plugin.ErrClosed) {
			// Replaced while we waited: the new version takes it.
			if nl := d.current.Load().find(l.conf.Name); nl != nil && nl != l && nl.p != nil {
				l = nl
				attempt--
				continue
			}
		}
		if ctx.Err() != nil || kind == plugin.KindOutput || kind == plugin.KindError {
			break // the plugin's own verdict: trying again changes nothing
		}
	}
	return nil, err
}

// delivery turns the n-th action of a plugin for an event into an outbox
// entry whose id is stable, so a replayed event does not send twice; key
// is the event's order key.
func delivery(eventID, key string, conf pluginconf.Plugin, allow []string, n int, a plugin.Action) deliver.Delivery {
	id := eventID + "/" + conf.Name + "/" + strconv.Itoa(n)
	d := deliver.Delivery{
		ID:             id,
		Plugin:         conf.Name,
		EventID:        eventID,
		Resource:       a.Resource,
		Method:         a.Method,
		URL:            a.URL,
		Header:         slices.Clone(a.Headers),
		Body:           a.Body,
		IdempotencyKey: a.IdempotencyKey,
		Policy: deliver.Policy{
			Attempts:   conf.Delivery.Attempts,
			Backoff:    conf.Delivery.Backoff,
			MaxBackoff: conf.Delivery.MaxBackoff,
			Schedule:   conf.Delivery.Schedule,
			Timeout:    conf.Delivery.Timeout,
			Allow:      allow,
		},
	}
	if d.Resource == "" {
		d.Resource = key
	}
	if d.IdempotencyKey == "" {
		d.IdempotencyKey = id
	}
	if s := a.Sign; s != nil {
		d.Sign = &deliver.Sign{Scheme: s.Scheme, Secret: s.Secret, Header: s.Header,
			TimestampHeader: s.TimestampHeader, Template: s.Template, Timestamp: s.Timestamp}
	}
	return d
}
