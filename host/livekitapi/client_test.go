package livekitapi

import (
	"fmt"
	"testing"
	"time"

	"github.com/livekit/protocol/auth"
)

// TestTokenCache: a token is signed once per room and reused for the first
// half of its life, then signed again; grants never leak across rooms.
func TestTokenCache(t *testing.T) {
	c := New("http://127.0.0.1:1", "key", "secret", time.Second)
	now := time.Unix(1_800_000_000, 0)
	c.now = func() time.Time { return now }
	var signed []string // the room of each signing
	c.sign = func(g *auth.VideoGrant) (string, error) {
		signed = append(signed, g.Room)
		return fmt.Sprintf("tok-%d-%s", len(signed), g.Room), nil
	}
	steps := []struct {
		name    string
		advance time.Duration
		room    string
		want    string // the Authorization value
	}{
		{"first call about no room", 0, "", "Bearer tok-1-"},
		{"first call about room a", 0, "a", "Bearer tok-2-a"},
		{"again within half the life", tokenTTL/2 - time.Second, "a", "Bearer tok-2-a"},
		{"no room, still cached", 0, "", "Bearer tok-1-"},
		{"room b has its own", 0, "b", "Bearer tok-3-b"},
		{"past half the life", time.Second, "a", "Bearer tok-4-a"},
	}
	for _, st := range steps {
		now = now.Add(st.advance)
		got, err := c.token(st.room)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if got != st.want {
			t.Errorf("%s: token(%q) = %q, want %q", st.name, st.room, got, st.want)
		}
	}
	for i := range maxTokens + 10 {
		if _, err := c.token(fmt.Sprintf("room-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(c.tokens); n > maxTokens {
		t.Errorf("%d cached tokens, bound %d", n, maxTokens)
	}
}
