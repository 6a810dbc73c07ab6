// Package livekitapi calls the LiveKit server API the Meet logic needs, over
// livekit/protocol's Twirp clients, with a short-lived token per call.
package livekitapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/livekit"
	"github.com/twitchtv/twirp"
)

// tokenTTL bounds how long a leaked server API token is worth anything.
const tokenTTL = time.Minute

// Client is a LiveKit server API client.
type Client struct {
	key, secret string
	rooms       livekit.RoomService
	egress      livekit.Egress
}

// New returns a client for the LiveKit server at baseURL (http or https).
// timeout bounds every call, so a hung LiveKit never stalls the pipeline.
func New(baseURL, key, secret string, timeout time.Duration) *Client {
	hc := &http.Client{Timeout: timeout}
	return &Client{
		key:    key,
		secret: secret,
		rooms:  livekit.NewRoomServiceProtobufClient(baseURL, hc),
		egress: livekit.NewEgressProtobufClient(baseURL, hc),
	}
}

// withToken attaches a token granting exactly what lkedge uses, scoped to
// room when the call is about one room.
func (c *Client) withToken(ctx context.Context, room string) (context.Context, error) {
	grant := &auth.VideoGrant{RoomList: true, RoomRecord: true, RoomCreate: true}
	if room != "" {
		grant.RoomAdmin, grant.Room = true, room
	}
	tok, err := auth.NewAccessToken(c.key, c.secret).SetVideoGrant(grant).SetValidFor(tokenTTL).ToJWT()
	if err != nil {
		return nil, fmt.Errorf("livekit token: %w", err)
	}
	h := http.Header{}
	h.Set("Authorization", "Bearer "+tok)
	return twirp.WithHTTPRequestHeaders(ctx, h)
}

// GetRoom returns the LiveKit room called name, or nil if it does not exist.
func (c *Client) GetRoom(ctx context.Context, name string) (*livekit.Room, error) {
	ctx, err := c.withToken(ctx, "")
	if err != nil {
		return nil, err
	}
	res, err := c.rooms.ListRooms(ctx, &livekit.ListRoomsRequest{Names: []string{name}})
	if err != nil {
		return nil, fmt.Errorf("livekit ListRooms %s: %w", name, err)
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
		return nil, err
	}
	res, err := c.egress.ListEgress(ctx, &livekit.ListEgressRequest{RoomName: room, Active: true})
	if err != nil {
		var te twirp.Error
		if errors.As(err, &te) && te.Code() == twirp.NotFound {
			return nil, nil
		}
		return nil, fmt.Errorf("livekit ListEgress %s: %w", room, err)
	}
	return res.Items, nil
}

// SendData sends a reliable data message on topic to the participants of
// room whose sids are listed, or to everyone when none are.
func (c *Client) SendData(ctx context.Context, room, topic string, data []byte, sids []string) error {
	ctx, err := c.withToken(ctx, room)
	if err != nil {
		return err
	}
	_, err = c.rooms.SendData(ctx, &livekit.SendDataRequest{
		Room: room, Data: data, Kind: livekit.DataPacket_RELIABLE, Topic: &topic, DestinationSids: sids,
	})
	if err != nil {
		return fmt.Errorf("livekit SendData %s topic %s: %w", room, topic, err)
	}
	return nil
}

// DeleteRoom closes the LiveKit room if it exists.
func (c *Client) DeleteRoom(ctx context.Context, room string) error {
	ctx, err := c.withToken(ctx, room)
	if err != nil {
		return err
	}
	if _, err := c.rooms.DeleteRoom(ctx, &livekit.DeleteRoomRequest{Room: room}); err != nil {
		var te twirp.Error
		if errors.As(err, &te) && te.Code() == twirp.NotFound {
			return nil
		}
		return fmt.Errorf("livekit DeleteRoom %s: %w", room, err)
	}
	return nil
}
