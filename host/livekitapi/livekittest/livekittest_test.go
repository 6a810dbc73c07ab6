package livekittest_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/livekit"
	"github.com/twitchtv/twirp"

	"github.com/lkedge/lkedge/host/livekitapi"
	"github.com/lkedge/lkedge/host/livekitapi/livekittest"
)

const (
	key    = "devkey"
	secret = "devsecret-devsecret-devsecret-devsecret"
)

func TestClientRoundTrip(t *testing.T) {
	t.Parallel()
	fake := livekittest.New(t, key, secret)
	fake.SetRoom("r1", `{"createdBy":"openviduMeet"}`)
	fake.AddEgress(&livekit.EgressInfo{EgressId: "EG_1", RoomName: "r1", Status: livekit.EgressStatus_EGRESS_ACTIVE})
	fake.AddEgress(&livekit.EgressInfo{EgressId: "EG_2", RoomName: "r1", Status: livekit.EgressStatus_EGRESS_COMPLETE})
	fake.AddEgress(&livekit.EgressInfo{EgressId: "EG_3", RoomName: "r2", Status: livekit.EgressStatus_EGRESS_ACTIVE})
	c := livekitapi.New(fake.URL(), key, secret, 5*time.Second)
	ctx := context.Background()

	room, err := c.GetRoom(ctx, "r1")
	if err != nil || room == nil || room.Metadata != `{"createdBy":"openviduMeet"}` {
		t.Fatalf("GetRoom(r1) = %v, %v", room, err)
	}
	if room, err := c.GetRoom(ctx, "nope"); err != nil || room != nil {
		t.Fatalf("GetRoom(nope) = %v, %v; want nil, nil", room, err)
	}
	active, err := c.ListActiveEgress(ctx, "r1")
	if err != nil || len(active) != 1 || active[0].EgressId != "EG_1" {
		t.Fatalf("ListActiveEgress(r1) = %v, %v; want [EG_1]", active, err)
	}
	if err := c.SendData(ctx, "r1", "topic", []byte("x"), []string{"PA_1"}); err != nil {
		t.Fatal(err)
	}
	if got := fake.SentData(); len(got) != 1 || got[0].Room != "r1" || got[0].Topic != "topic" || string(got[0].Data) != "x" || !slices.Equal(got[0].DestinationIdentities, []string{"PA_1"}) {
		t.Fatalf("SentData = %+v", got)
	}
	if err := c.DeleteRoom(ctx, "r1"); err != nil {
		t.Fatal(err)
	}
	if fake.HasRoom("r1") {
		t.Fatal("room r1 still exists after DeleteRoom")
	}
	// LiveKit answers NotFound for a missing room; the client maps it to nil.
	if err := c.DeleteRoom(ctx, "r1"); err != nil {
		t.Fatalf("DeleteRoom of a missing room: %v", err)
	}
	if got := fake.DeletedRooms(); !slices.Equal(got, []string{"r1", "r1"}) {
		t.Fatalf("DeletedRooms = %v", got)
	}
	if n := fake.Calls(livekittest.MethodListEgress); n != 1 {
		t.Fatalf("Calls(ListEgress) = %d, want 1", n)
	}
}

func TestFailAndDelay(t *testing.T) {
	t.Parallel()
	fake := livekittest.New(t, key, secret)
	c := livekitapi.New(fake.URL(), key, secret, 5*time.Second)
	ctx := context.Background()

	fake.Fail(livekittest.MethodListRooms, errors.New("boom"))
	if _, err := c.GetRoom(ctx, "r"); err == nil {
		t.Fatal("GetRoom succeeded while failing")
	}
	fake.Fail(livekittest.MethodListEgress, twirp.NotFoundError("no egress"))
	if eg, err := c.ListActiveEgress(ctx, "r"); err != nil || eg != nil {
		t.Fatalf("ListActiveEgress on NotFound = %v, %v; want nil, nil", eg, err)
	}
	fake.Fail(livekittest.MethodListRooms, nil)
	if _, err := c.GetRoom(ctx, "r"); err != nil {
		t.Fatalf("GetRoom after Fail(nil): %v", err)
	}

	fake.Delay(3 * time.Second)
	tctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := c.GetRoom(tctx, "r"); err == nil {
		t.Fatal("GetRoom succeeded despite the caller's deadline")
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("GetRoom took %v with a 100ms deadline", d)
	}
}

func token(t *testing.T, k, s string, g *auth.VideoGrant) string {
	t.Helper()
	tok, err := auth.NewAccessToken(k, s).SetVideoGrant(g).SetValidFor(time.Minute).ToJWT()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestAuth(t *testing.T) {
	t.Parallel()
	fake := livekittest.New(t, key, secret)
	fake.SetRoom("r1", "")
	rooms := livekit.NewRoomServiceProtobufClient(fake.URL(), http.DefaultClient)
	egress := livekit.NewEgressProtobufClient(fake.URL(), http.DefaultClient)

	all := &auth.VideoGrant{RoomList: true, RoomRecord: true, RoomCreate: true, RoomAdmin: true, Room: "r1"}
	listRooms := func(ctx context.Context) error {
		_, err := rooms.ListRooms(ctx, &livekit.ListRoomsRequest{})
		return err
	}
	listEgress := func(ctx context.Context) error {
		_, err := egress.ListEgress(ctx, &livekit.ListEgressRequest{RoomName: "r1"})
		return err
	}
	sendData := func(ctx context.Context) error {
		_, err := rooms.SendData(ctx, &livekit.SendDataRequest{Room: "r1", Data: []byte("x")})
		return err
	}
	deleteRoom := func(ctx context.Context) error {
		_, err := rooms.DeleteRoom(ctx, &livekit.DeleteRoomRequest{Room: "r1"})
		return err
	}
	createRoom := func(ctx context.Context) error {
		_, err := rooms.CreateRoom(ctx, &livekit.CreateRoomRequest{Name: "r2"})
		return err
	}
	tests := []struct {
		name   string
		header string // Authorization; "" sends none
		call   func(context.Context) error
		want   twirp.ErrorCode // "" means success
	}{
		{"no header", "", listRooms, twirp.Unauthenticated},
		{"no bearer scheme", token(t, key, secret, all), listRooms, twirp.Unauthenticated},
		{"garbage token", "Bearer not-a-jwt", listRooms, twirp.Unauthenticated},
		{"wrong secret", "Bearer " + token(t, key, "other-secret-other-secret-other", all), listRooms, twirp.Unauthenticated},
		{"wrong key", "Bearer " + token(t, "otherkey", secret, all), listRooms, twirp.Unauthenticated},
		{"ListRooms ok", "Bearer " + token(t, key, secret, &auth.VideoGrant{RoomList: true}), listRooms, ""},
		{"ListRooms without roomList", "Bearer " + token(t, key, secret, &auth.VideoGrant{RoomRecord: true, RoomCreate: true}), listRooms, twirp.PermissionDenied},
		{"ListEgress ok", "Bearer " + token(t, key, secret, &auth.VideoGrant{RoomRecord: true}), listEgress, ""},
		{"ListEgress without roomRecord", "Bearer " + token(t, key, secret, &auth.VideoGrant{RoomList: true}), listEgress, twirp.PermissionDenied},
		{"SendData ok", "Bearer " + token(t, key, secret, &auth.VideoGrant{RoomAdmin: true, Room: "r1"}), sendData, ""},
		{"SendData admin of another room", "Bearer " + token(t, key, secret, &auth.VideoGrant{RoomAdmin: true, Room: "r2"}), sendData, twirp.PermissionDenied},
		{"SendData without roomAdmin", "Bearer " + token(t, key, secret, &auth.VideoGrant{RoomList: true, Room: "r1"}), sendData, twirp.PermissionDenied},
		{"DeleteRoom without roomCreate", "Bearer " + token(t, key, secret, &auth.VideoGrant{RoomAdmin: true, Room: "r1"}), deleteRoom, twirp.PermissionDenied},
		{"DeleteRoom ok", "Bearer " + token(t, key, secret, &auth.VideoGrant{RoomCreate: true}), deleteRoom, ""},
		{"unimplemented", "Bearer " + token(t, key, secret, all), createRoom, twirp.Unimplemented},
	}
	for _, tc := range tests {
		ctx := context.Background()
		if tc.header != "" {
			h := http.Header{}
			h.Set("Authorization", tc.header)
			var err error
			if ctx, err = twirp.WithHTTPRequestHeaders(ctx, h); err != nil {
				t.Fatal(err)
			}
		}
		err := tc.call(ctx)
		var got twirp.ErrorCode
		if err != nil {
			var te twirp.Error
			if !errors.As(err, &te) {
				t.Errorf("%s: non-twirp error %v", tc.name, err)
				continue
			}
			got = te.Code()
		}
		if got != tc.want {
			t.Errorf("%s: code %q (err %v), want %q", tc.name, got, err, tc.want)
		}
	}
	if n := len(fake.SentData()); n != 1 {
		t.Errorf("recorded %d SendData calls, want only the authorized one", n)
	}
}
