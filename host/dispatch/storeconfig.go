package dispatch

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lkedge/lkedge/host/egress"
	"github.com/lkedge/lkedge/host/store"
)

// storeConfig reads config values kept in JSON objects of the metadata
// store, such as OpenVidu Meet's global-preferences.json, which Meet's
// admin API changes at runtime. Objects are re-read at most every ttl:
// Meet itself reads them on every event, which would put a store round
// trip on every plugin call.
type storeConfig struct {
	st     store.Store
	prefix string
	ttl    time.Duration
	mu     sync.Mutex
	cache  map[string]cachedObject
}

type cachedObject struct {
	obj map[string]any // nil: missing or not JSON
	at  time.Time
}

// object returns the decoded object at key, from the cache while fresh.
// A missing or unreadable object is nil; the caller falls back.
func (s *storeConfig) object(ctx context.Context, key string) map[string]any {
	s.mu.Lock()
	c, ok := s.cache[key]
	s.mu.Unlock()
	if ok && time.Since(c.at) < s.ttl {
		return c.obj
	}
	var obj map[string]any
	got, err := s.st.Get(ctx, s.prefix+key)
	if err == nil {
		if json.Unmarshal(got.Body, &obj) != nil {
			obj = nil
		}
	} else if !errors.Is(err, store.ErrNotFound) && ok {
		obj = c.obj // a store hiccup keeps the last known value
	}
	s.mu.Lock()
	s.cache[key] = cachedObject{obj: obj, at: time.Now()}
	s.mu.Unlock()
	return obj
}

// value is the field at a dotted path of the object at key, as text:
// strings as they are, booleans and numbers in their JSON form.
func (s *storeConfig) value(ctx context.Context, key, field string) (string, bool) {
	if s == nil {
		return "", false
	}
	var cur any = s.object(ctx, key)
	for _, part := range strings.Split(field, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return "", false
		}
		if cur, ok = m[part]; !ok {
			return "", false
		}
	}
	switch v := cur.(type) {
	case string:
		return v, true
	case bool:
		return strconv.FormatBool(v), true
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), true
	}
	return "", false
}

// lookup answers a plugin's config read: the store's value when the key
// comes from the store and is there, else the configured value.
func (l *loaded) lookup(ctx context.Context, key string) (string, bool) {
	if sv, ok := l.conf.FromStore[key]; ok {
		if v, ok := l.storeCfg.value(ctx, sv.Key, sv.Field); ok {
			return v, true
		}
	}
	v, ok := l.conf.Config[key]
	return v, ok
}

// allowed is the plugin's allow-list with the origins of its store-backed
// config:KEY entries as they are now. A URL read from the store was set by
// whoever can edit the store (OpenVidu Meet's admin API edits
// global-preferences.json), not by the operator, so its entry is restricted:
// public addresses only, or also loopback and private ones for a key in
// allowPrivate; never link-local, metadata or lkedge's own listeners. The
// fallback value (env, default) is the operator's and already in Allow.
func (l *loaded) allowed(ctx context.Context) []string {
	entries := l.conf.Allow
	for _, key := range l.conf.AllowConfig {
		sv := l.conf.FromStore[key]
		v, ok := l.storeCfg.value(ctx, sv.Key, sv.Field)
		if !ok {
			continue
		}
		u, err := url.Parse(v)
		if err != nil {
			continue
		}
		reach := egress.ReachPublic
		if slices.Contains(l.conf.AllowPrivate, key) {
			reach = egress.ReachPrivate
		}
		if e, err := egress.RestrictedEntry(u, reach); err == nil {
			entries = append(entries[:len(entries):len(entries)], e)
		}
	}
	return entries
}

// configured tells whether every config key the plugin requires has a
// value now, "false" counting as none, so that an on/off key such as
// OpenVidu Meet's webhooksPreferences.enabled can be required too; a
// plugin that is not configured is not called.
func (l *loaded) configured(ctx context.Context) bool {
	for _, k := range l.conf.Requires {
		if v, _ := l.lookup(ctx, k); v == "" || v == "false" {
			return false
		}
	}
	return true
}
