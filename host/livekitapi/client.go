// Package livekitapi calls the LiveKit server API the Meet logic needs, over
// livekit/protocol's Twirp clients, with short-lived tokens scoped to the
// room a call is about.
package livekitapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/livekit"
	"github.com/twitchtv/twirp"
)

// tokenTTL bounds how long a leaked server API token is worth anything.
const tokenTTL = time.Minute

// maxTokens bounds the token cache; past it the cache starts over, which
// only costs signing again.
const maxTokens = 1024

// Client is a LiveKit server API client.
type Client struct {
	rooms   livekit.RoomService
	egress  livekit.Egress
	now     func() time.Time
	breaker *breaker
	// sign makes a token for grant, valid for tokenTTL; tests count it.
	sign func(grant *auth.VideoGrant) (string, error)

	// tokens caches a signed token per room ("" for calls about no room)
	// for the first half of its life: signing one per call showed in
	// profiles of the load benchmark (docs/benchmarks.md), and a token is
	// never sent with less than half its life left.
	mu     sync.Mutex
	tokens map[string]cachedToken
}

type cachedToken struct {
	header  string // "Bearer <jwt>"
	renewAt time.Time
}

// idleConns is how many idle connections to LiveKit the client keeps. Go's
// default transport keeps two per host, and the pipeline's workers call
// LiveKit at once (data messages, room lookups): every call past two closed
// its connection on return and the next one dialed anew.
const idleConns = 32

// New returns a client for the LiveKit server at baseURL (http or https).
// timeout bounds every call, so a hung LiveKit never stalls the pipeline;
// while LiveKit cannot be connected to, calls fail fast (ErrUnreachable).
func New(baseURL, key, secret string, timeout time.Duration) *Client {
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.MaxIdleConnsPerHost = idleConns
	b := &breaker{base: base, now: time.Now}
	hc := &http.Client{Timeout: timeout, Transport: b}
	return &Client{
		rooms:   livekit.NewRoomServiceProtobufClient(baseURL, hc),
		egress:  livekit.NewEgressProtobufClient(baseURL, hc),
		now:     time.Now,
		breaker: b,
		tokens:  make(map[string]cachedToken),
		sign: func(grant *auth.VideoGrant) (string, error) {
			return auth.NewAccessToken(key, secret).SetVideoGrant(grant).SetValidFor(tokenTTL).ToJWT()
		},
	}
}

// withToken attaches a token granting exactly what lkedge uses, scoped to
// room when the call is about one room. Every call starts here, so it is
// also where a call fails fast while LiveKit is unreachable.
func (c *Client) withToken(ctx context.Context, room string) (context.Context, error) {
	if err := c.breaker.check(); err != nil {
		return nil, err
	}
	bearer, err := c.token(room)
	if err != nil {
		return nil, err
	}
	h := http.Header{}
	h.Set("Authorization", bearer)
	return twirp.WithHTTPRequestHeaders(ctx, h)
}

// token returns the Authorization value for calls about room, signing a
// new token when the cached one is past half its life.
func (c *Client) token(room string) (string, error) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if t, ok := c.tokens[room]; ok && now.Before(t.renewAt) {
		return t.header, nil
	}
	grant := &auth.VideoGrant{RoomList: true, RoomRecord: true, RoomCreate: true}
	if room != "" {
		grant.RoomAdmin, grant.Room = true, room
	}
	tok, err := c.sign(grant)
	if err != nil {
		return "", fmt.Errorf("livekit token: %w", err)
	}
	if len(c.tokens) >= maxTokens {
		clear(c.tokens)
	}
	t := cachedToken{header: "Bearer " + tok, renewAt: now.Add(tokenTTL / 2)}
	c.tokens[room] = t
	return t.header, nil
}

// GetRoom returns the LiveKit room called name, or nil if it does not exist.
func (c *Client) GetRoom(ctx context.Context, name string) (*livekit.Room, error) {
	ctx, err := c.withToken(ctx, "")
	if err != nil {
		return nil, &callError{"ListRooms", name, err}
	}
	res, err := c.rooms.ListRooms(ctx, &livekit.ListRoomsRequest{Names: []string{name}})
	if err != nil {
		return nil, &callError{"ListRooms", name, err}
	}
	for _, r := range res.Rooms {
		if r.Name == name {
			return r, nil
		}
	}
	return nil, nil
}

// ListActiveEgress lists the egresses of room that LiveKit reports as
// active (ListEgress{active: true}: starting, active or ending), of any kind.
// A 404 from LiveKit means none.
func (c *Client) ListActiveEgress(ctx context.Context, room string) ([]*livekit.EgressInfo, error) {
	ctx, err := c.withToken(ctx, room)
	if err != nil {
		return nil, &callError{"ListEgress", room, err}
	}
	res, err := c.egress.ListEgress(ctx, &livekit.ListEgressRequest{RoomName: room, Active: true})
	if err != nil {
		var te twirp.Error
		if errors.As(err, &te) && te.Code() == twirp.NotFound {
			return nil, nil
		}
		return nil, &callError{"ListEgress", room, err}
	}
	return res.Items, nil
}

// SendData sends a reliable data message on topic to the participants of
// room whose identities are listed, or to everyone when none are.
// (OpenVidu Meet addresses them by sid, a field LiveKit deprecated for
// identities; the same participant receives it.)
func (c *Client) SendData(ctx context.Context, room, topic string, data []byte, identities []string) error {
	ctx, err := c.withToken(ctx, room)
	if err != nil {
		return &callError{"SendData", room + " topic " + topic, err}
	}
	_, err = c.rooms.SendData(ctx, &livekit.SendDataRequest{
		Room: room, Data: data, Kind: livekit.DataPacket_RELIABLE, Topic: &topic, DestinationIdentities: identities,
	})
	if err != nil {
		return &callError{"SendData", room + " topic " + topic, err}
	}
	return nil
}

// DeleteRoom closes the LiveKit room if it exists.
func (c *Client) DeleteRoom(ctx context.Context, room string) error {
	ctx, err := c.withToken(ctx, room)
	if err != nil {
		return &callError{"DeleteRoom", room, err}
	}
	if _, err := c.rooms.DeleteRoom(ctx, &livekit.DeleteRoomRequest{Room: room}); err != nil {
		var te twirp.Error
		if errors.As(err, &te) && te.Code() == twirp.NotFound {
			return nil
		}
		return &callError{"DeleteRoom", room, err}
	}
	return nil
}
