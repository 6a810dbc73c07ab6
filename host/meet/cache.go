package meet

import "sync"

// cacheSize bounds each of the Handler's caches. It is far more rooms and
// recordings than one replica has in flight at once, so eviction is rare,
// and an evicted entry only costs one store read the next time.
const cacheSize = 4096

// cache is a bounded map shared by the Handler's goroutines. Its entries
// only ever save store reads, so dropping one is always safe; that is why a
// full cache evicts an arbitrary entry (the first of Go's randomised map
// iteration) rather than keeping LRU bookkeeping on every lookup.
type cache[K comparable, V any] struct {
	mu      sync.Mutex
	max     int
	entries map[K]V
	// gen counts forget calls, so that add can refuse an answer read from
	// the store before a forget: it may describe what was just deleted.
	gen uint64
}

func newCache[K comparable, V any](max int) *cache[K, V] {
	return &cache[K, V]{max: max, entries: make(map[K]V)}
}

func (c *cache[K, V]) get(k K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.entries[k]
	return v, ok
}

// generation is read before the store read whose answer will be added.
func (c *cache[K, V]) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// add remembers v under k unless forget was called since gen was read.
// The check is global rather than per key: forgets are rare, and a refused
// add only costs a store read later.
func (c *cache[K, V]) add(k K, v V, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if _, ok := c.entries[k]; !ok && len(c.entries) >= c.max {
		for old := range c.entries {
			delete(c.entries, old)
			break
		}
	}
	c.entries[k] = v
}

// forget drops k and makes every add prepared before it a no-op.
func (c *cache[K, V]) forget(k K) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.entries, k)
	c.gen++
}
