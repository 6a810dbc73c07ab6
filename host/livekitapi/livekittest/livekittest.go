// Package livekittest is a fake LiveKit server for tests. It speaks real
// Twirp through livekit/protocol's generated servers, so a real
// livekitapi.Client is exercised over HTTP, token and all.
//
// Only the calls lkedge makes are implemented: RoomService ListRooms,
// SendData and DeleteRoom, and Egress ListEgress. Every other method answers
// twirp Unimplemented.
package livekittest

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/livekit/protocol/auth"
	"github.com/livekit/protocol/livekit"
	"github.com/twitchtv/twirp"
	"google.golang.org/protobuf/proto"
)

// Method names accepted by Fail and Calls.
const (
	MethodListRooms  = "ListRooms"
	MethodListEgress = "ListEgress"
	MethodSendData   = "SendData"
	MethodDeleteRoom = "DeleteRoom"
)

// DataCall is one recorded SendData call.
type DataCall struct {
	Room  string
	Topic string
	Data  []byte
	// DestinationIdentities is nil (or empty) for a broadcast.
	DestinationIdentities []string
}

// Server is a fake LiveKit server. All its methods are safe for concurrent
// use.
type Server struct {
	key, secret string
	srv         *httptest.Server

	mu       sync.Mutex
	rooms    map[string]*livekit.Room
	egresses []*livekit.EgressInfo
	data     []DataCall
	deleted  []string
	calls    map[string]int
	fail     map[string]error
	delay    time.Duration
}

// New starts a fake LiveKit server accepting tokens signed with key and
// secret. It is closed when the test ends.
func New(t testing.TB, key, secret string) *Server {
	t.Helper()
	s := &Server{
		key:    key,
		secret: secret,
		rooms:  make(map[string]*livekit.Room),
		calls:  make(map[string]int),
		fail:   make(map[string]error),
	}
	rooms := livekit.NewRoomServiceServer(&roomService{s: s})
	egress := livekit.NewEgressServer(&egressService{s: s})
	mux := http.NewServeMux()
	mux.Handle(rooms.PathPrefix(), rooms)
	mux.Handle(egress.PathPrefix(), egress)
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := context.WithValue(r.Context(), authHeaderKey{}, r.Header.Get("Authorization"))
		mux.ServeHTTP(w, r.WithContext(ctx))
	}))
	t.Cleanup(s.srv.Close)
	return s
}

// URL is the server's base URL, to pass to livekitapi.New.
func (s *Server) URL() string { return s.srv.URL }

// SetRoom creates or replaces the room called name with the given metadata.
func (s *Server) SetRoom(name, metadata string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rooms[name] = &livekit.Room{Sid: "RM_" + name, Name: name, Metadata: metadata}
}

// RemoveRoom forgets the room called name, as if it had closed.
func (s *Server) RemoveRoom(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.rooms, name)
}

// HasRoom reports whether the room called name exists.
func (s *Server) HasRoom(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.rooms[name]
	return ok
}

// AddEgress adds (a copy of) e to the egresses ListEgress reports.
func (s *Server) AddEgress(e *livekit.EgressInfo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.egresses = append(s.egresses, proto.Clone(e).(*livekit.EgressInfo))
}

// SentData returns the SendData calls received so far, in order.
func (s *Server) SentData() []DataCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]DataCall, len(s.data))
	for i, d := range s.data {
		out[i] = DataCall{Room: d.Room, Topic: d.Topic, Data: slices.Clone(d.Data), DestinationIdentities: slices.Clone(d.DestinationIdentities)}
	}
	return out
}

// DeletedRooms returns the room names of the DeleteRoom calls received so
// far (failed ones included), in order.
func (s *Server) DeletedRooms() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.deleted)
}

// Calls reports how many calls of method (e.g. "ListEgress") arrived,
// whether or not they succeeded.
func (s *Server) Calls(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[method]
}

// Fail makes every later call of method (e.g. "ListEgress") fail with err,
// after authentication. A twirp.Error is returned as is; any other error
// becomes a twirp internal error. A nil err makes the method work again.
func (s *Server) Fail(method string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		delete(s.fail, method)
		return
	}
	s.fail[method] = err
}

// Delay makes every later call wait d before answering, or until the
// caller gives up. Zero removes the delay.
func (s *Server) Delay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

type authHeaderKey struct{}

// begin counts the call, waits the configured delay, checks the token and
// its grant, and returns the configured failure, if any.
func (s *Server) begin(ctx context.Context, method string, allowed func(*auth.VideoGrant) bool) error {
	s.mu.Lock()
	s.calls[method]++
	delay := s.delay
	s.mu.Unlock()
	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return twirp.NewError(twirp.Canceled, "livekittest: caller gave up")
		}
	}
	if err := s.authorize(ctx, allowed); err != nil {
		return err
	}
	s.mu.Lock()
	err := s.fail[method]
	s.mu.Unlock()
	if err == nil {
		return nil
	}
	if te, ok := err.(twirp.Error); ok {
		return te
	}
	return twirp.InternalErrorWith(err)
}

func (s *Server) authorize(ctx context.Context, allowed func(*auth.VideoGrant) bool) error {
	h, _ := ctx.Value(authHeaderKey{}).(string)
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || tok == "" {
		return twirp.NewError(twirp.Unauthenticated, "livekittest: missing bearer token")
	}
	v, err := auth.ParseAPIToken(tok)
	if err != nil {
		return twirp.NewError(twirp.Unauthenticated, "livekittest: invalid token: "+err.Error())
	}
	if v.APIKey() != s.key {
		return twirp.NewError(twirp.Unauthenticated, "livekittest: unknown API key "+v.APIKey())
	}
	_, grants, err := v.Verify(s.secret)
	if err != nil {
		return twirp.NewError(twirp.Unauthenticated, "livekittest: invalid token: "+err.Error())
	}
	if grants == nil || grants.Video == nil || !allowed(grants.Video) {
		return twirp.NewError(twirp.PermissionDenied, "livekittest: permissions denied")
	}
	return nil
}

func unimplemented(method string) error {
	return twirp.NewError(twirp.Unimplemented, "livekittest: "+method+" is not implemented")
}

// activeStatus is what LiveKit's ListEgress{active: true} keeps: egresses
// that have not ended.
func activeStatus(st livekit.EgressStatus) bool {
	switch st {
	case livekit.EgressStatus_EGRESS_STARTING, livekit.EgressStatus_EGRESS_ACTIVE, livekit.EgressStatus_EGRESS_ENDING:
		return true
	}
	return false
}

type roomService struct{ s *Server }

var _ livekit.RoomService = (*roomService)(nil)

func (r *roomService) ListRooms(ctx context.Context, req *livekit.ListRoomsRequest) (*livekit.ListRoomsResponse, error) {
	if err := r.s.begin(ctx, MethodListRooms, func(g *auth.VideoGrant) bool { return g.RoomList }); err != nil {
		return nil, err
	}
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	res := &livekit.ListRoomsResponse{}
	for name, room := range r.s.rooms {
		if len(req.Names) == 0 || slices.Contains(req.Names, name) {
			res.Rooms = append(res.Rooms, proto.Clone(room).(*livekit.Room))
		}
	}
	slices.SortFunc(res.Rooms, func(a, b *livekit.Room) int { return strings.Compare(a.Name, b.Name) })
	return res, nil
}

func (r *roomService) SendData(ctx context.Context, req *livekit.SendDataRequest) (*livekit.SendDataResponse, error) {
	if err := r.s.begin(ctx, MethodSendData, func(g *auth.VideoGrant) bool { return g.RoomAdmin && g.Room == req.Room }); err != nil {
		return nil, err
	}
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	r.s.data = append(r.s.data, DataCall{
		Room: req.Room, Topic: req.GetTopic(), Data: slices.Clone(req.Data), DestinationIdentities: slices.Clone(req.DestinationIdentities),
	})
	return &livekit.SendDataResponse{}, nil
}

func (r *roomService) DeleteRoom(ctx context.Context, req *livekit.DeleteRoomRequest) (*livekit.DeleteRoomResponse, error) {
	r.s.mu.Lock()
	r.s.deleted = append(r.s.deleted, req.Room)
	r.s.mu.Unlock()
	if err := r.s.begin(ctx, MethodDeleteRoom, func(g *auth.VideoGrant) bool { return g.RoomCreate }); err != nil {
		return nil, err
	}
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	if _, ok := r.s.rooms[req.Room]; !ok {
		return nil, twirp.NotFoundError("room not found")
	}
	delete(r.s.rooms, req.Room)
	return &livekit.DeleteRoomResponse{}, nil
}

func (r *roomService) CreateRoom(context.Context, *livekit.CreateRoomRequest) (*livekit.Room, error) {
	return nil, unimplemented("CreateRoom")
}

func (r *roomService) ListParticipants(context.Context, *livekit.ListParticipantsRequest) (*livekit.ListParticipantsResponse, error) {
	return nil, unimplemented("ListParticipants")
}

func (r *roomService) GetParticipant(context.Context, *livekit.RoomParticipantIdentity) (*livekit.ParticipantInfo, error) {
	return nil, unimplemented("GetParticipant")
}

func (r *roomService) RemoveParticipant(context.Context, *livekit.RoomParticipantIdentity) (*livekit.RemoveParticipantResponse, error) {
	return nil, unimplemented("RemoveParticipant")
}

func (r *roomService) MutePublishedTrack(context.Context, *livekit.MuteRoomTrackRequest) (*livekit.MuteRoomTrackResponse, error) {
	return nil, unimplemented("MutePublishedTrack")
}

func (r *roomService) UpdateParticipant(context.Context, *livekit.UpdateParticipantRequest) (*livekit.ParticipantInfo, error) {
	return nil, unimplemented("UpdateParticipant")
}

func (r *roomService) UpdateSubscriptions(context.Context, *livekit.UpdateSubscriptionsRequest) (*livekit.UpdateSubscriptionsResponse, error) {
	return nil, unimplemented("UpdateSubscriptions")
}

func (r *roomService) UpdateRoomMetadata(context.Context, *livekit.UpdateRoomMetadataRequest) (*livekit.Room, error) {
	return nil, unimplemented("UpdateRoomMetadata")
}

func (r *roomService) ForwardParticipant(context.Context, *livekit.ForwardParticipantRequest) (*livekit.ForwardParticipantResponse, error) {
	return nil, unimplemented("ForwardParticipant")
}

func (r *roomService) MoveParticipant(context.Context, *livekit.MoveParticipantRequest) (*livekit.MoveParticipantResponse, error) {
	return nil, unimplemented("MoveParticipant")
}

func (r *roomService) PerformRpc(context.Context, *livekit.PerformRpcRequest) (*livekit.PerformRpcResponse, error) {
	return nil, unimplemented("PerformRpc")
}

type egressService struct{ s *Server }

var _ livekit.Egress = (*egressService)(nil)

func (e *egressService) ListEgress(ctx context.Context, req *livekit.ListEgressRequest) (*livekit.ListEgressResponse, error) {
	if err := e.s.begin(ctx, MethodListEgress, func(g *auth.VideoGrant) bool { return g.RoomRecord }); err != nil {
		return nil, err
	}
	e.s.mu.Lock()
	defer e.s.mu.Unlock()
	res := &livekit.ListEgressResponse{}
	for _, eg := range e.s.egresses {
		switch {
		case req.RoomName != "" && eg.RoomName != req.RoomName,
			req.EgressId != "" && eg.EgressId != req.EgressId,
			req.Active && !activeStatus(eg.Status):
			continue
		}
		res.Items = append(res.Items, proto.Clone(eg).(*livekit.EgressInfo))
	}
	return res, nil
}

func (e *egressService) StartEgress(context.Context, *livekit.StartEgressRequest) (*livekit.EgressInfo, error) {
	return nil, unimplemented("StartEgress")
}

func (e *egressService) UpdateLayout(context.Context, *livekit.UpdateLayoutRequest) (*livekit.EgressInfo, error) {
	return nil, unimplemented("UpdateLayout")
}

func (e *egressService) UpdateStream(context.Context, *livekit.UpdateStreamRequest) (*livekit.EgressInfo, error) {
	return nil, unimplemented("UpdateStream")
}

func (e *egressService) StopEgress(context.Context, *livekit.StopEgressRequest) (*livekit.EgressInfo, error) {
	return nil, unimplemented("StopEgress")
}

func (e *egressService) StartRoomCompositeEgress(context.Context, *livekit.RoomCompositeEgressRequest) (*livekit.EgressInfo, error) {
	return nil, unimplemented("StartRoomCompositeEgress")
}

func (e *egressService) StartWebEgress(context.Context, *livekit.WebEgressRequest) (*livekit.EgressInfo, error) {
	return nil, unimplemented("StartWebEgress")
}

func (e *egressService) StartParticipantEgress(context.Context, *livekit.ParticipantEgressRequest) (*livekit.EgressInfo, error) {
	return nil, unimplemented("StartParticipantEgress")
}

func (e *egressService) StartTrackCompositeEgress(context.Context, *livekit.TrackCompositeEgressRequest) (*livekit.EgressInfo, error) {
	return nil, unimplemented("StartTrackCompositeEgress")
}

func (e *egressService) StartTrackEgress(context.Context, *livekit.TrackEgressRequest) (*livekit.EgressInfo, error) {
	return nil, unimplemented("StartTrackEgress")
}
