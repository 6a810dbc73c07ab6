// Package config loads lkedge's settings: a YAML file whose keys are the
// environment variable names, overridden by the environment itself, so an
// operator migrating from OpenVidu Meet keeps the names they already use.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is the validated configuration of one lkedge process.
type Config struct {
	// LiveKitURL is the LiveKit server API base (http or https; ws and wss
	// are accepted and mapped like OpenVidu Meet does).
	LiveKitURL string
	// APIKey and APISecret sign LiveKit server API calls and `lkedge send`.
	APIKey    string
	APISecret string
	// Keys holds every key → secret accepted on incoming webhooks (the API key
	// plus LIVEKIT_KEYS), so keys can be rotated without dropping events.
	Keys map[string]string

	MeetNameID  string
	S3Bucket    string
	S3Subbucket string

	// S3 is set when LKEDGE_STORE is "s3".
	S3 *S3

	// Consul is set when LKEDGE_COORDINATOR is "consul".
	Consul *Consul
	// ReplicaID names this replica in claims and locks; "" means the id
	// kept in the data directory.
	ReplicaID string
	// LockGCInterval is how often the leader collects orphan recording locks.
	LockGCInterval time.Duration
	// PluginConcurrency bounds the plugin calls running at once; 0 means
	// one fewer than the cores Go uses (at least 1).
	PluginConcurrency int

	// Listen is the webhook listener: ":6080", or "127.0.0.1:6080" by
	// default while the development key is accepted.
	Listen string
	// AdminListen serves the operator API (dead letters, pprof) that
	// lkedge dlq uses; loopback by default, since it is not for LiveKit's
	// side, and only elsewhere with an AdminToken.
	AdminListen string
	// AdminToken, when set, is required as "Authorization: Bearer TOKEN" on
	// every admin API request.
	AdminToken string
	// AllowDevKeys lets the development key (devkey/secret) be accepted on
	// a listener that is not loopback.
	AllowDevKeys bool

	StoreDir     string // root of the file store (LKEDGE_STORE=file://DIR); "" with S3
	DataDir      string
	PluginsFile  string
	MaxBodyBytes int
	ClockLeeway  time.Duration
	LogLevel     string
	LogFormat    string
}

// S3 is the S3 store's connection, with OpenVidu Meet's setting names.
type S3 struct {
	Endpoint  string // MEET_S3_SERVICE_ENDPOINT
	AccessKey string // MEET_S3_ACCESS_KEY; empty means the AWS credential chain
	SecretKey string // MEET_S3_SECRET_KEY
	Region    string // MEET_AWS_REGION
	PathStyle bool   // MEET_S3_WITH_PATH_STYLE_ACCESS
}

// Consul is the Consul coordinator's connection.
type Consul struct {
	Addr   string // CONSUL_HTTP_ADDR
	Token  string // CONSUL_HTTP_TOKEN
	Prefix string // LKEDGE_CONSUL_PREFIX
}

// setting describes one configuration key: its default and how it is applied.
type setting struct {
	def   string
	apply func(c *Config, v string) error
}

// settings is the single list of keys accepted in the file and the environment.
var settings = map[string]setting{
	"LIVEKIT_URL":        {"http://127.0.0.1:7880", func(c *Config, v string) error { u, err := liveKitURL(v); c.LiveKitURL = u; return err }},
	"LIVEKIT_API_KEY":    {"devkey", func(c *Config, v string) error { c.APIKey = v; return nonEmpty(v) }},
	"LIVEKIT_API_SECRET": {"secret", func(c *Config, v string) error { c.APISecret = v; return nonEmpty(v) }},
	"LIVEKIT_KEYS":       {"", func(c *Config, v string) (err error) { c.Keys, err = ParseKeys(v); return err }},
	"MEET_NAME_ID":       {"openviduMeet", func(c *Config, v string) error { c.MeetNameID = v; return nonEmpty(v) }},
	"MEET_S3_BUCKET":     {"openvidu", func(c *Config, v string) error { c.S3Bucket = v; return bucketName(v) }},
	"MEET_S3_SUBBUCKET":  {"openvidu-meet", func(c *Config, v string) error { c.S3Subbucket = v; return subbucket(v) }},
	"MEET_S3_SERVICE_ENDPOINT": {"", func(c *Config, v string) error {
		if v == "" {
			return nil
		}
		_, err := httpURL(v)
		return err
	}},
	"MEET_S3_ACCESS_KEY": {"", nil},
	"MEET_S3_SECRET_KEY": {"", nil},
	"MEET_AWS_REGION":    {"us-east-1", func(c *Config, v string) error { return nonEmpty(v) }},
	"MEET_S3_WITH_PATH_STYLE_ACCESS": {"true", func(c *Config, v string) error {
		if _, err := strconv.ParseBool(v); err != nil {
			return fmt.Errorf("must be true or false, got %q", v)
		}
		return nil
	}},
	"LKEDGE_COORDINATOR": {"inproc", func(c *Config, v string) error {
		if v == "consul" {
			c.Consul = &Consul{}
		}
		return oneOf(v, "inproc", "consul")
	}},
	"CONSUL_HTTP_ADDR":     {"127.0.0.1:8500", nil},
	"CONSUL_HTTP_TOKEN":    {"", nil},
	"LKEDGE_CONSUL_PREFIX": {"lkedge/", nil},
	"LKEDGE_REPLICA_ID": {"", func(c *Config, v string) error {
		c.ReplicaID = v
		if strings.ContainsAny(v, "/ ") {
			return errors.New("must not contain '/' or spaces")
		}
		return nil
	}},
	"LKEDGE_LOCK_GC_INTERVAL": {"30m", func(c *Config, v string) (err error) {
		c.LockGCInterval, err = parseDuration(v)
		if err == nil && c.LockGCInterval < time.Second {
			err = errors.New("must be at least 1s")
		}
		return err
	}},
	"LKEDGE_LISTEN":       {":6080", func(c *Config, v string) error { c.Listen = v; return listenAddr(v) }},
	"LKEDGE_ADMIN_LISTEN": {"127.0.0.1:6081", func(c *Config, v string) error { c.AdminListen = v; return listenAddr(v) }},
	"LKEDGE_ADMIN_TOKEN": {"", func(c *Config, v string) error {
		c.AdminToken = v
		if v != "" && len(v) < minAdminToken {
			return fmt.Errorf("must be at least %d characters (e.g. openssl rand -hex 32)", minAdminToken)
		}
		return nil
	}},
	"LKEDGE_ALLOW_DEV_KEYS": {"false", func(c *Config, v string) (err error) {
		c.AllowDevKeys, err = strconv.ParseBool(v)
		return err
	}},
	"LKEDGE_STORE":    {"file://./data", func(c *Config, v string) (err error) { c.StoreDir, err = storeDir(v); return err }},
	"LKEDGE_DATA_DIR": {"./data", func(c *Config, v string) error { c.DataDir = v; return nonEmpty(v) }},
	"LKEDGE_PLUGINS":  {"./plugins.yaml", func(c *Config, v string) error { c.PluginsFile = v; return nil }},
	"LKEDGE_MAX_BODY_BYTES": {"1048576", func(c *Config, v string) (err error) {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1024 || n > 64<<20 {
			return fmt.Errorf("must be a whole number of bytes from 1024 to 67108864 (64 MiB), got %q", v)
		}
		c.MaxBodyBytes = n
		return nil
	}},
	"LKEDGE_PLUGIN_CONCURRENCY": {"0", func(c *Config, v string) (err error) {
		c.PluginConcurrency, err = strconv.Atoi(v)
		if err == nil && (c.PluginConcurrency < 0 || c.PluginConcurrency > 1024) {
			err = errors.New("must be between 0 (one fewer than the cores) and 1024")
		}
		return err
	}},
	"LKEDGE_CLOCK_LEEWAY": {"0s", func(c *Config, v string) (err error) {
		c.ClockLeeway, err = parseDuration(v)
		if err == nil && (c.ClockLeeway < 0 || c.ClockLeeway > 5*time.Minute) {
			err = errors.New("must be between 0s and 5m")
		}
		return err
	}},
	"LKEDGE_LOG_LEVEL":  {"info", func(c *Config, v string) error { c.LogLevel = v; return oneOf(v, "debug", "info", "warn", "error") }},
	"LKEDGE_LOG_FORMAT": {"auto", func(c *Config, v string) error { c.LogFormat = v; return oneOf(v, "auto", "json", "text") }},
}

// The development key of livekit-server --dev, lkedge's default: anyone
// can sign webhooks with it.
const (
	DevKey    = "devkey"
	DevSecret = "secret"
)

// devListen is LKEDGE_LISTEN's default while the development key is
// accepted: the default port, on loopback only.
const devListen = "127.0.0.1:6080"

// minAdminToken is the shortest LKEDGE_ADMIN_TOKEN accepted: the token is
// all that guards replay and pprof on the network.
const minAdminToken = 16

// Keys lists every accepted key name in order, for documentation and errors.
func Keys() []string {
	names := make([]string, 0, len(settings))
	for k := range settings {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// Load reads the YAML file at path (a missing file is an error only when
// required is true, i.e. when the operator named it), then applies the
// environment through lookup (os.LookupEnv in production).
func Load(path string, required bool, lookup func(string) (string, bool)) (*Config, error) {
	file := map[string]string{}
	source := "config file"
	if path != "" {
		data, err := os.ReadFile(path)
		switch {
		case err == nil:
			if file, err = parseFile(data); err != nil {
				return nil, fmt.Errorf("config file %s: %w", path, err)
			}
			source = "config file " + path
		case errors.Is(err, os.ErrNotExist) && !required:
		default:
			return nil, fmt.Errorf("config file: %w", err)
		}
	}
	return build(file, source, lookup)
}

func parseFile(data []byte) (map[string]string, error) {
	var raw map[string]yaml.Node
	if err := yaml.Unmarshal(data, &raw); err != nil {
		return nil, err
	}
	out := make(map[string]string, len(raw))
	for k, n := range raw {
		if _, ok := settings[k]; !ok {
			return nil, fmt.Errorf("line %d: unknown key %s (known keys: %s)", n.Line, k, strings.Join(Keys(), ", "))
		}
		if n.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("line %d: %s must be a single value", n.Line, k)
		}
		out[k] = n.Value
	}
	return out, nil
}

// build applies the defaults, then file (read from fileSource), then the
// environment.
func build(file map[string]string, fileSource string, lookup func(string) (string, bool)) (*Config, error) {
	c := &Config{}
	values := make(map[string]string, len(settings))
	sources := make(map[string]string, len(settings))
	for _, name := range Keys() {
		s := settings[name]
		v, src := s.def, "default"
		if fv, ok := file[name]; ok {
			v, src = fv, fileSource
		}
		if ev, ok := lookup(name); ok {
			v, src = ev, "environment"
		}
		v = strings.TrimSpace(v)
		values[name] = v
		sources[name] = src
		if s.apply == nil {
			continue
		}
		if err := s.apply(c, v); err != nil {
			return nil, fmt.Errorf("invalid %s (from %s): %w", name, src, err)
		}
		// The default plugins file may be absent (no plugins); one an
		// operator named must exist, or a typo would turn every plugin off.
		if name == "LKEDGE_PLUGINS" && src != "default" {
			if _, err := os.Stat(v); errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("invalid %s (from %s): %s does not exist (leave it unset to run without plugins)", name, src, v)
			} else if err != nil {
				return nil, fmt.Errorf("invalid %s (from %s): %w", name, src, err)
			}
		}
	}
	if c.StoreDir == "" {
		c.S3 = &S3{
			Endpoint: values["MEET_S3_SERVICE_ENDPOINT"], AccessKey: values["MEET_S3_ACCESS_KEY"],
			SecretKey: values["MEET_S3_SECRET_KEY"], Region: values["MEET_AWS_REGION"],
		}
		c.S3.PathStyle, _ = strconv.ParseBool(values["MEET_S3_WITH_PATH_STYLE_ACCESS"])
		if (c.S3.AccessKey == "") != (c.S3.SecretKey == "") {
			return nil, errors.New("invalid MEET_S3_ACCESS_KEY / MEET_S3_SECRET_KEY: set both, or neither to use the AWS credential chain")
		}
	}
	if c.Consul != nil {
		c.Consul.Addr, c.Consul.Token, c.Consul.Prefix = values["CONSUL_HTTP_ADDR"], values["CONSUL_HTTP_TOKEN"], values["LKEDGE_CONSUL_PREFIX"]
		if c.Consul.Addr == "" {
			return nil, errors.New("invalid CONSUL_HTTP_ADDR: must not be empty with LKEDGE_COORDINATOR=consul")
		}
		if c.Consul.Prefix == "" || strings.HasPrefix(c.Consul.Prefix, "/") {
			return nil, errors.New("invalid LKEDGE_CONSUL_PREFIX: must be a non-empty key prefix without a leading '/'")
		}
	}
	if c.Keys == nil {
		c.Keys = map[string]string{}
	}
	if s, ok := c.Keys[c.APIKey]; ok && s != c.APISecret {
		return nil, fmt.Errorf("invalid LIVEKIT_KEYS: key %q has a different secret than LIVEKIT_API_SECRET", c.APIKey)
	}
	c.Keys[c.APIKey] = c.APISecret
	if err := exposure(c, sources); err != nil {
		return nil, err
	}
	return c, nil
}

// exposure keeps what has no real authentication off the network: the
// admin API without a token, and the webhook listener while the public
// development key is accepted (anyone could sign events with it). With
// that key and no LKEDGE_LISTEN, lkedge listens on loopback.
func exposure(c *Config, sources map[string]string) error {
	if !loopback(c.AdminListen) && c.AdminToken == "" {
		return fmt.Errorf("invalid LKEDGE_ADMIN_LISTEN (from %s): %q is not a loopback address, and the admin API (dead-letter replay, pprof) is open to whoever reaches it: set LKEDGE_ADMIN_TOKEN, or listen on 127.0.0.1",
			sources["LKEDGE_ADMIN_LISTEN"], c.AdminListen)
	}
	if c.Keys[DevKey] != DevSecret || c.AllowDevKeys {
		return nil
	}
	if sources["LKEDGE_LISTEN"] == "default" {
		c.Listen = devListen
		return nil
	}
	if !loopback(c.Listen) {
		return fmt.Errorf("invalid LKEDGE_LISTEN (from %s): %q is not a loopback address, and the development key %s/%s (anyone can sign webhooks with it) is accepted: set your own LIVEKIT_API_KEY and LIVEKIT_API_SECRET, or LKEDGE_ALLOW_DEV_KEYS=true",
			sources["LKEDGE_LISTEN"], c.Listen, DevKey, DevSecret)
	}
	return nil
}

// loopback tells whether addr (host:port) listens on loopback only. An
// empty host, 0.0.0.0, :: and names other than localhost are not.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// ParseKeys reads LiveKit's key list format: "key1: secret1, key2: secret2".
func ParseKeys(v string) (map[string]string, error) {
	keys := map[string]string{}
	if v == "" {
		return keys, nil
	}
	for i, pair := range strings.Split(v, ",") {
		k, s, ok := strings.Cut(pair, ":")
		k, s = strings.TrimSpace(k), strings.TrimSpace(s)
		if !ok || k == "" || s == "" {
			return nil, fmt.Errorf("entry %d is not \"key: secret\"", i+1)
		}
		if _, dup := keys[k]; dup {
			return nil, fmt.Errorf("key %q is listed twice", k)
		}
		keys[k] = s
	}
	return keys, nil
}

// parseDuration is time.ParseDuration with an error an operator reads.
func parseDuration(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("must be a duration such as 30s, 5m or 1h30m, got %q", v)
	}
	return d, nil
}

func nonEmpty(v string) error {
	if v == "" {
		return errors.New("must not be empty")
	}
	return nil
}

func oneOf(v string, allowed ...string) error {
	for _, a := range allowed {
		if v == a {
			return nil
		}
	}
	return fmt.Errorf("must be one of %s", strings.Join(allowed, ", "))
}

// httpURL checks an http or https URL with a host.
func httpURL(v string) (*url.URL, error) {
	u, err := url.Parse(v)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("scheme must be http or https, got %q", u.Scheme)
	}
	if u.Host == "" {
		return nil, errors.New("has no host")
	}
	return u, nil
}

// liveKitURL maps ws:// and wss:// to http:// and https:// as OpenVidu Meet
// does for its private LiveKit URL, and rejects anything else.
func liveKitURL(v string) (string, error) {
	if rest, ok := strings.CutPrefix(v, "ws://"); ok {
		v = "http://" + rest
	} else if rest, ok := strings.CutPrefix(v, "wss://"); ok {
		v = "https://" + rest
	}
	u, err := httpURL(v)
	if err != nil {
		return "", fmt.Errorf("%w (ws and wss are accepted too)", err)
	}
	return strings.TrimRight(u.String(), "/"), nil
}

var bucketRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)

func bucketName(v string) error {
	if !bucketRE.MatchString(v) || strings.Contains(v, "..") {
		return errors.New("is not a valid S3 bucket name (3-63 lower-case letters, digits, '.', '-')")
	}
	return nil
}

func subbucket(v string) error {
	if v == "" || strings.HasPrefix(v, "/") || strings.HasSuffix(v, "/") || strings.Contains(v, "//") {
		return errors.New("must be a non-empty key prefix without leading or trailing '/'")
	}
	return nil
}

func listenAddr(v string) error {
	if _, port, err := net.SplitHostPort(v); err != nil {
		return err
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	return nil
}

func storeDir(v string) (string, error) {
	dir, ok := strings.CutPrefix(v, "file://")
	switch {
	case v == "s3":
		return "", nil
	case !ok || dir == "":
		return "", errors.New(`must be "s3" or "file://DIR"`)
	}
	return filepath.Clean(dir), nil
}
