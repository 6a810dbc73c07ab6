// Package pluginconf reads plugins.yaml: which plugins run, on which
// events, with what configuration, secrets, destinations and limits. A file
// is checked as a whole; every error names the plugin and the field.
package pluginconf

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/livekit/protocol/webhook"

	"github.com/lkedge/lkedge/host/egress"
	"github.com/lkedge/lkedge/host/event"
)

// File is a checked plugins.yaml.
type File struct {
	Plugins []Plugin
}

// Rooms selects which rooms' events a plugin receives.
const (
	RoomsMeet = "meet" // rooms owned by OpenVidu Meet (the default)
	RoomsAll  = "all"
)

// Failure policies: what happens to a plugin's call on an event when it
// fails after its retries. Either way only that plugin's call is
// concerned: the event and the other plugins go on.
const (
	// FailureSkip logs and counts the failure and goes on with the
	// plugin's next event.
	FailureSkip = "skip"
	// FailureHold tries the call again with back-off in the plugin's own
	// queue, its later calls on the same room waiting behind it, and
	// finally keeps it as a failed task (a log line and a metric).
	FailureHold = "hold"
)

// Plugin is one checked plugin entry.
type Plugin struct {
	Name string
	// Wasm is the module's path, resolved against the file's folder.
	Wasm string
	// SHA256 pins the module's content when set (lower-case hex).
	SHA256 string
	// Events are the event types it receives; "*" means all.
	Events []string
	Rooms  string
	// Config holds the resolved plain values the plugin can read.
	Config map[string]string
	// Secrets maps the names the plugin may sign with to where the values
	// live; values are read only when a request is signed.
	Secrets map[string]SecretRef
	// Allow is the egress allow-list (host/egress syntax), with config:KEY
	// entries resolved to the origin of that config value.
	Allow []string
	// FromStore are config values read from the metadata store while
	// running (OpenVidu Meet's global-preferences.json); Config holds their
	// fallbacks.
	FromStore map[string]StoreValue
	// AllowConfig are the config:KEY allow entries of store values: the
	// origin of their current value is allowed, at public addresses only
	// (see AllowPrivate), since whoever edits the store is not the
	// operator.
	AllowConfig []string
	// AllowPrivate are the keys of AllowConfig whose store value may also
	// point at loopback and private addresses (plugins.yaml allowPrivate).
	AllowPrivate []string
	// Requires are config keys that must be non-empty and not "false"
	// for the plugin to be called at all: a plugin listed by default stays
	// off, neither compiled nor instantiated, until its URL is configured
	// or its on/off key turned on.
	Requires []string
	Limits   Limits
	Failure  string
	Delivery Delivery
}

// Limits bound a plugin's calls.
type Limits struct {
	Memory         uint64
	Timeout        time.Duration
	Instances      int
	MaxActions     int
	MaxActionBytes int
}

// Delivery is the plugin's retry policy for its requests; zero values
// take the host's defaults (OpenVidu Meet's: 6 attempts, 300 ms doubling,
// 5 s per attempt).
type Delivery struct {
	Attempts   int
	Backoff    time.Duration
	MaxBackoff time.Duration
	Schedule   []time.Duration
	Timeout    time.Duration
}

// StoreValue is a config value kept in a JSON object of the metadata store,
// such as OpenVidu Meet's global-preferences.json.
type StoreValue struct {
	// Key is the object's key under the Meet sub-bucket.
	Key string
	// Field is a dotted path into the object (webhooksPreferences.url).
	Field string
}

// SecretRef says where a secret's value lives.
type SecretRef struct {
	Env  string
	File string
}

// Value reads the secret now, so a rotated secret is picked up without a
// reload.
func (r SecretRef) Value() ([]byte, error) {
	if r.Env != "" {
		v, ok := os.LookupEnv(r.Env)
		if !ok || v == "" {
			return nil, fmt.Errorf("environment variable %s is not set", r.Env)
		}
		return []byte(v), nil
	}
	b, err := os.ReadFile(r.File)
	if err != nil {
		return nil, fmt.Errorf("read secret file: %w", err)
	}
	return bytes.TrimRight(b, "\r\n"), nil
}

// Receives tells whether the plugin subscribed to events of type typ in a
// room Meet owns or not.
func (p *Plugin) Receives(typ string, meetOwned bool) bool {
	if p.Rooms == RoomsMeet && !meetOwned {
		return false
	}
	for _, e := range p.Events {
		if e == "*" || e == typ {
			return true
		}
	}
	return false
}

// The YAML shapes. Scalars that may come from the environment are
// valueNodes.
type pluginYAML struct {
	Name    string                `yaml:"name"`
	Wasm    string                `yaml:"wasm"`
	SHA256  string                `yaml:"sha256"`
	Events  []string              `yaml:"events"`
	Rooms   string                `yaml:"rooms"`
	Config  map[string]valueYAML  `yaml:"config"`
	Secrets map[string]secretYAML `yaml:"secrets"`
	Allow   []string              `yaml:"allow"`
	// AllowPrivate lists config keys whose store-sourced URL may reach
	// loopback and private addresses.
	AllowPrivate []string     `yaml:"allowPrivate"`
	Requires     []string     `yaml:"requires"`
	Limits       limitsYAML   `yaml:"limits"`
	Failure      string       `yaml:"failure"`
	Delivery     deliveryYAML `yaml:"delivery"`
}

type limitsYAML struct {
	Memory         string `yaml:"memory"`
	Timeout        string `yaml:"timeout"`
	Instances      int    `yaml:"instances"`
	MaxActions     int    `yaml:"maxActions"`
	MaxActionBytes int    `yaml:"maxActionBytes"`
}

type deliveryYAML struct {
	Attempts   int      `yaml:"attempts"`
	Backoff    string   `yaml:"backoff"`
	MaxBackoff string   `yaml:"maxBackoff"`
	Schedule   []string `yaml:"schedule"`
	Timeout    string   `yaml:"timeout"`
}

// valueYAML is a config value: a plain scalar, or {env: NAME, default: V},
// or {store: KEY, field: PATH} with env and default as fallbacks.
type valueYAML struct {
	plain   *string
	Store   string  `yaml:"store"`
	Field   string  `yaml:"field"`
	Env     string  `yaml:"env"`
	Default *string `yaml:"default"`
}

func (v *valueYAML) UnmarshalYAML(unmarshal func(any) error) error {
	var raw any
	if err := unmarshal(&raw); err != nil {
		return err
	}
	if _, isMap := raw.(map[string]any); !isMap {
		var s string
		if err := unmarshal(&s); err != nil {
			return err
		}
		v.plain = &s
		return nil
	}
	type plain valueYAML
	var p plain
	if err := unmarshal(&p); err != nil {
		return err
	}
	if p.Env == "" && p.Store == "" {
		return errors.New("a config value is a string, {env: NAME, default: VALUE} or {store: KEY, field: PATH}")
	}
	if (p.Store == "") != (p.Field == "") {
		return errors.New("a config value from the store needs both store (the object) and field (a dotted JSON path)")
	}
	*v = valueYAML(p)
	return nil
}

// secretYAML is {env: NAME} or {file: PATH}; a plain string is refused so
// that no secret sits in plugins.yaml in clear.
type secretYAML struct {
	Env  string `yaml:"env"`
	File string `yaml:"file"`
}

func (s *secretYAML) UnmarshalYAML(unmarshal func(any) error) error {
	var raw any
	if err := unmarshal(&raw); err != nil {
		return err
	}
	if _, isMap := raw.(map[string]any); !isMap {
		return errors.New("a secret must be {env: NAME} or {file: PATH}, never its value in plugins.yaml")
	}
	type plain secretYAML
	var p plain
	if err := unmarshal(&p); err != nil {
		return err
	}
	if (p.Env == "") == (p.File == "") {
		return errors.New("a secret needs exactly one of env or file")
	}
	*s = secretYAML(p)
	return nil
}

// knownEvents are the event types a plugin can receive: LiveKit's webhooks
// and the ones lkedge derives.
var knownEvents = []string{
	webhook.EventRoomStarted, webhook.EventRoomFinished, webhook.EventParticipantJoined, webhook.EventParticipantLeft,
	webhook.EventParticipantConnectionAborted, webhook.EventTrackPublished, webhook.EventTrackUnpublished,
	webhook.EventEgressStarted, webhook.EventEgressUpdated, webhook.EventEgressEnded,
	webhook.EventIngressStarted, webhook.EventIngressEnded, event.TypeRoomFinished, "*",
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// Load reads and checks the file at path. Every problem found is
// reported, each on its own line as "FILE:LINE: plugin NAME: FIELD: what".
func Load(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("plugins file: %w", err)
	}
	return parse(b, filepath.Dir(path), os.LookupEnv, path)
}

// Parse checks a plugins.yaml; dir resolves relative wasm paths and lookup
// reads the environment. Errors name lines as "line N: ...".
func Parse(data []byte, dir string, lookup func(string) (string, bool)) (*File, error) {
	return parse(data, dir, lookup, "")
}

func parse(data []byte, dir string, lookup func(string) (string, bool), file string) (*File, error) {
	at := func(line int) string {
		if file == "" {
			return fmt.Sprintf("line %d: ", line)
		}
		return fmt.Sprintf("%s:%d: ", file, line)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		if file != "" {
			return nil, fmt.Errorf("%s: invalid YAML: %w", file, err)
		}
		return nil, fmt.Errorf("invalid YAML: %w", err)
	}
	f := &File{}
	if len(doc.Content) == 0 {
		return f, nil // an empty file has no plugins
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%sthe file must be a mapping with a plugins list", at(root.Line))
	}
	var errs []error
	var list *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Value != "plugins" {
			errs = append(errs, fmt.Errorf("%sunknown field %s (the file has only plugins)", at(k.Line), k.Value))
			continue
		}
		if v.Kind != yaml.SequenceNode {
			if v.Tag != "!!null" {
				errs = append(errs, fmt.Errorf("%splugins: must be a list of plugins", at(v.Line)))
			}
			continue
		}
		list = v
	}
	seen := map[string]bool{}
	for i, entry := range listItems(list) {
		name := fmt.Sprintf("#%d", i+1)
		if n := mapValue(entry, "name"); n != nil && n.Kind == yaml.ScalarNode && n.Value != "" {
			name = n.Value
		}
		where := func(line int) string { return at(line) + "plugin " + name + ": " }
		if entry.Kind != yaml.MappingNode {
			errs = append(errs, fmt.Errorf("%smust be a mapping with name, wasm and events", where(entry.Line)))
			continue
		}
		bad := unknownFields(entry, reflect.TypeFor[pluginYAML](), "")
		for _, u := range bad {
			errs = append(errs, fmt.Errorf("%s%s: unknown field", where(u.line), u.field))
		}
		var rp pluginYAML
		if err := entry.Decode(&rp); err != nil {
			var te *yaml.TypeError
			if !errors.As(err, &te) {
				errs = append(errs, fmt.Errorf("%s%w", where(entry.Line), err))
				continue
			}
			for _, msg := range te.Errors {
				line, field, text := describeTypeError(entry, msg)
				errs = append(errs, fmt.Errorf("%s%s: %s", where(line), field, text))
			}
			continue
		}
		p, err := check(rp, dir, lookup)
		if err != nil {
			// check's errors start with the field they are about.
			field, _, _ := strings.Cut(err.Error(), ":")
			field, _, _ = strings.Cut(field, ".")
			line := entry.Line
			if k := mapKey(entry, field); k != nil {
				line = k.Line
			}
			errs = append(errs, fmt.Errorf("%s%w", where(line), err))
			continue
		}
		if len(bad) > 0 {
			continue
		}
		if seen[p.Name] {
			errs = append(errs, fmt.Errorf("%sname used twice", where(entry.Line)))
			continue
		}
		seen[p.Name] = true
		f.Plugins = append(f.Plugins, p)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return f, nil
}

func listItems(n *yaml.Node) []*yaml.Node {
	if n == nil {
		return nil
	}
	return n.Content
}

// mapKey returns the key node named key of mapping n, or nil.
func mapKey(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i]
		}
	}
	return nil
}

// mapValue returns the value of key in mapping n, or nil.
func mapValue(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

type unknownField struct {
	line  int
	field string // dotted path
}

// unknownFields lists the keys of n that type t (a struct's yaml tags,
// through maps and slices) does not have, each with its line.
func unknownFields(n *yaml.Node, t reflect.Type, path string) []unknownField {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var out []unknownField
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return nil // a scalar form (a plain config value) or a type error
		}
		fields := map[string]reflect.Type{}
		for i := range t.NumField() {
			sf := t.Field(i)
			name, _, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
			if sf.IsExported() && name != "" && name != "-" {
				fields[name] = sf.Type
			}
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			ft, ok := fields[k.Value]
			if !ok {
				out = append(out, unknownField{k.Line, path + k.Value})
				continue
			}
			out = append(out, unknownFields(v, ft, path+k.Value+".")...)
		}
	case reflect.Map:
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				out = append(out, unknownFields(n.Content[i+1], t.Elem(), path+n.Content[i].Value+".")...)
			}
		}
	case reflect.Slice:
		if n.Kind == yaml.SequenceNode {
			for _, c := range n.Content {
				out = append(out, unknownFields(c, t.Elem(), path)...)
			}
		}
	}
	return out
}

var typeErrorRE = regexp.MustCompile("^line (\\d+): cannot unmarshal !!(\\w+)(?: `(.*)`)? into (.+)$")

// describeTypeError turns one of yaml's type errors ("line 6: cannot
// unmarshal !!str `lots` into int") into the line, the field at that line
// and what an operator reads ("lots" is not a whole number), without Go
// type names.
func describeTypeError(entry *yaml.Node, msg string) (int, string, string) {
	m := typeErrorRE.FindStringSubmatch(msg)
	if m == nil {
		return entry.Line, "value", msg
	}
	line, _ := strconv.Atoi(m[1])
	want := "a value of another kind"
	switch into := m[4]; {
	case strings.HasPrefix(into, "[]"):
		want = "a list"
	case strings.HasPrefix(into, "map["), strings.Contains(into, "."):
		want = "a mapping"
	case strings.HasPrefix(into, "int"), strings.HasPrefix(into, "uint"):
		want = "a whole number"
	case into == "string":
		want = "a single value"
	case into == "bool":
		want = "true or false"
	}
	got := fmt.Sprintf("%q", m[3])
	switch m[2] {
	case "map":
		got = "a mapping"
	case "seq":
		got = "a list"
	}
	return line, fieldAt(entry, line, m[2], m[3]), got + " is not " + want
}

// fieldAt is the dotted path of the deepest key in n whose value starts at
// line, preferring the one whose value is of kind tag (map, seq) or is the
// scalar value: several keys may share a line ({a: 1, b: x}).
func fieldAt(n *yaml.Node, line int, tag, value string) string {
	best, exact := "", false
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := path + k.Value
				if v.Line == line && !exact {
					best = p
					exact = (tag == "map" && v.Kind == yaml.MappingNode) || (tag == "seq" && v.Kind == yaml.SequenceNode) ||
						(v.Kind == yaml.ScalarNode && v.Value == value)
				}
				walk(v, p+".")
			}
		case yaml.SequenceNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		}
	}
	walk(n, "")
	return best
}

func check(rp pluginYAML, dir string, lookup func(string) (string, bool)) (Plugin, error) {
	p := Plugin{Name: rp.Name, SHA256: strings.ToLower(rp.SHA256), Events: rp.Events, Rooms: rp.Rooms, Failure: rp.Failure}
	if !nameRE.MatchString(p.Name) {
		return p, fmt.Errorf("name: %q must be lower-case letters, digits and dashes", p.Name)
	}
	if rp.Wasm == "" {
		return p, errors.New("wasm: the module's path is required")
	}
	p.Wasm = rp.Wasm
	if !filepath.IsAbs(p.Wasm) {
		p.Wasm = filepath.Join(dir, p.Wasm)
	}
	if p.SHA256 != "" {
		if b, err := hex.DecodeString(p.SHA256); err != nil || len(b) != sha256.Size {
			return p, fmt.Errorf("sha256: %q is not 64 hex digits", rp.SHA256)
		}
	}
	if len(p.Events) == 0 {
		return p, errors.New(`events: list the event types it receives, or "*"`)
	}
	for _, e := range p.Events {
		if e == "" {
			return p, errors.New("events: empty event name")
		}
		if !slices.Contains(knownEvents, e) {
			return p, fmt.Errorf("events: %q is not an event lkedge sends (%s, or \"*\" for all)", e, strings.Join(knownEvents, ", "))
		}
	}
	switch p.Rooms {
	case "":
		p.Rooms = RoomsMeet
	case RoomsMeet, RoomsAll:
	default:
		return p, fmt.Errorf("rooms: %q is not meet or all", p.Rooms)
	}
	switch p.Failure {
	case "":
		p.Failure = FailureSkip
	case FailureSkip, FailureHold:
	default:
		return p, fmt.Errorf("failure: %q is not skip or hold", p.Failure)
	}
	p.Config = map[string]string{}
	p.FromStore = map[string]StoreValue{}
	for k, v := range rp.Config {
		switch {
		case v.plain != nil:
			p.Config[k] = *v.plain
		default:
			// Config keeps the fallback; a store value overrides it when
			// the object and field exist.
			if val, ok := lookup(v.Env); ok && val != "" {
				p.Config[k] = val
			} else if v.Default != nil {
				p.Config[k] = *v.Default
			}
			if v.Store != "" {
				p.FromStore[k] = StoreValue{Key: v.Store, Field: v.Field}
			}
		}
	}
	for _, k := range rp.Requires {
		if _, ok := rp.Config[k]; !ok {
			return p, fmt.Errorf("requires: %q is not one of the plugin's config keys", k)
		}
	}
	p.Requires = rp.Requires
	p.Secrets = map[string]SecretRef{}
	for k, s := range rp.Secrets {
		ref := SecretRef(s)
		if ref.File != "" && !filepath.IsAbs(ref.File) {
			ref.File = filepath.Join(dir, ref.File)
		}
		p.Secrets[k] = ref
	}
	for _, a := range rp.Allow {
		if strings.HasPrefix(a, "public:") || strings.HasPrefix(a, "private:") {
			return p, fmt.Errorf("allow: %q: public: and private: entries are made by lkedge for URLs read from the store; write an origin, or config:KEY (with allowPrivate for a store value that may be private)", a)
		}
		key, isConfig := strings.CutPrefix(a, "config:")
		if !isConfig {
			p.Allow = append(p.Allow, a)
			continue
		}
		if _, dynamic := p.FromStore[key]; dynamic {
			// Its value can change while running: allowed as it is read.
			p.AllowConfig = append(p.AllowConfig, key)
		}
		v, ok := p.Config[key]
		if !ok || v == "" {
			continue // nothing configured, nothing allowed
		}
		u, err := url.Parse(v)
		if err != nil || u.Host == "" {
			return p, fmt.Errorf("allow: %s: config %s = %q is not an absolute URL", a, key, v)
		}
		p.Allow = append(p.Allow, u.Scheme+"://"+u.Host)
	}
	if _, err := egress.ParseAllowlist(p.Allow); err != nil {
		return p, fmt.Errorf("allow: %w", err)
	}
	for _, k := range rp.AllowPrivate {
		// Only a store value is restricted to public addresses; naming
		// anything else would suggest a limit or a permission that is not
		// there.
		if !slices.Contains(p.AllowConfig, k) {
			return p, fmt.Errorf("allowPrivate: %q is not a config key read from the store and listed in allow as \"config:%s\"", k, k)
		}
		if !slices.Contains(p.AllowPrivate, k) {
			p.AllowPrivate = append(p.AllowPrivate, k)
		}
	}
	var err error
	if p.Limits, err = checkLimits(rp.Limits); err != nil {
		return p, err
	}
	if p.Delivery, err = checkDelivery(rp.Delivery); err != nil {
		return p, err
	}
	return p, nil
}

func checkLimits(l limitsYAML) (Limits, error) {
	out := Limits{Instances: l.Instances, MaxActions: l.MaxActions, MaxActionBytes: l.MaxActionBytes}
	if l.Memory != "" {
		n, err := parseBytes(l.Memory)
		if err != nil {
			return out, fmt.Errorf("limits.memory: %w", err)
		}
		if n < 4<<20 {
			return out, fmt.Errorf("limits.memory: %s is below the 4MiB a Go plugin needs", l.Memory)
		}
		out.Memory = n
	}
	var err error
	if out.Timeout, err = duration("limits.timeout", l.Timeout); err != nil {
		return out, err
	}
	if out.Instances < 0 || out.MaxActions < 0 || out.MaxActionBytes < 0 {
		return out, errors.New("limits: counts cannot be negative")
	}
	return out, nil
}

func checkDelivery(d deliveryYAML) (Delivery, error) {
	out := Delivery{Attempts: d.Attempts}
	var err error
	if out.Backoff, err = duration("delivery.backoff", d.Backoff); err != nil {
		return out, err
	}
	if out.MaxBackoff, err = duration("delivery.maxBackoff", d.MaxBackoff); err != nil {
		return out, err
	}
	if out.Timeout, err = duration("delivery.timeout", d.Timeout); err != nil {
		return out, err
	}
	for i, s := range d.Schedule {
		v, err := duration(fmt.Sprintf("delivery.schedule[%d]", i), s)
		if err != nil {
			return out, err
		}
		out.Schedule = append(out.Schedule, v)
	}
	if out.Attempts < 0 {
		return out, errors.New("delivery.attempts: cannot be negative")
	}
	if len(out.Schedule) > 0 && out.Attempts != 0 && out.Attempts != len(out.Schedule)+1 {
		return out, fmt.Errorf("delivery.attempts: %d disagrees with a schedule of %d waits (attempts = waits + 1)", out.Attempts, len(out.Schedule))
	}
	return out, nil
}

func duration(field, s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s: %q is not a positive duration like 500ms or 2h", field, s)
	}
	return d, nil
}

var bytesRE = regexp.MustCompile(`^(\d+)\s*(B|KiB|MiB|GiB)?$`)

func parseBytes(s string) (uint64, error) {
	m := bytesRE.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, fmt.Errorf("%q is not a size like 64MiB", s)
	}
	var n uint64
	if _, err := fmt.Sscan(m[1], &n); err != nil {
		return 0, fmt.Errorf("%q: %w", s, err)
	}
	switch m[2] {
	case "KiB":
		n <<= 10
	case "MiB":
		n <<= 20
	case "GiB":
		n <<= 30
	}
	return n, nil
}
