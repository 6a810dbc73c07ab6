package livekitapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/livekit/protocol/auth"

	"github.com/lkedge/lkedge/host/livekitapi/livekittest"
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

// TestUnreachableFailsFast: after a connection to LiveKit fails, calls fail
// fast with ErrUnreachable for unreachableFor, then try again; an answer of
// any status, an error one included, never counts as unreachable.
func TestUnreachableFailsFast(t *testing.T) {
	const key, secret = "key", "secret-of-at-least-32-characters"
	fake := livekittest.New(t, key, secret)
	fake.SetRoom("r", `{"createdBy":"openviduMeet"}`)
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := closed.Addr().String()
	closed.Close() // nothing listens there now: dials are refused

	c := New(fake.URL(), key, secret, time.Second)
	now := time.Unix(1_800_000_000, 0)
	c.breaker.now = func() time.Time { return now }
	var up atomic.Bool
	var dials atomic.Int32
	base := c.breaker.base.(*http.Transport)
	dialer := &net.Dialer{}
	base.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		if !up.Load() {
			addr = down
		}
		return dialer.DialContext(ctx, network, addr)
	}

	steps := []struct {
		name            string
		advance         time.Duration
		up              bool
		failing         error // what the fake answers, when up
		wantErr         bool
		wantUnreachable bool
		wantDial        bool
	}{
		{"down: the dial fails", 0, false, nil, true, false, true},
		{"down: fails fast", 0, false, nil, true, true, false},
		{"up again, but still within the wait", unreachableFor - time.Millisecond, true, nil, true, true, false},
		{"after the wait: tries and succeeds", time.Millisecond, true, nil, false, false, true},
		{"an error answer", 0, true, errors.New("boom"), true, false, false},
		{"the next call is made", 0, true, nil, false, false, false},
	}
	for _, st := range steps {
		now = now.Add(st.advance)
		up.Store(st.up)
		fake.Fail(livekittest.MethodListRooms, st.failing)
		before := dials.Load()
		room, err := c.GetRoom(context.Background(), "r")
		if (err != nil) != st.wantErr || errors.Is(err, ErrUnreachable) != st.wantUnreachable {
			t.Fatalf("%s: GetRoom = %v, %v; want error %v, unreachable %v", st.name, room, err, st.wantErr, st.wantUnreachable)
		}
		if !st.wantErr && room == nil {
			t.Fatalf("%s: room not found", st.name)
		}
		if dialed := dials.Load() > before; dialed != st.wantDial {
			t.Fatalf("%s: dialed = %v, want %v", st.name, dialed, st.wantDial)
		}
	}
	if n := fake.Calls(livekittest.MethodListRooms); n != 3 {
		t.Errorf("the fake got %d ListRooms calls, want 3", n)
	}
}
