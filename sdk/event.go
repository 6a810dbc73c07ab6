package sdk

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
)

// Event is one lkedge event (docs/events.md, model version 1). LiveKit's
// objects keep LiveKit's JSON names; fields lkedge does not know yet are
// ignored, so a plugin keeps working when LiveKit adds some.
type Event struct {
	Version int    `json:"version"`
	ID      string `json:"id"`
	// Type is a LiveKit event name (egress_ended, room_finished, ...) or
	// one of lkedge's own (roomFinished).
	Type   string `json:"type"`
	Source string `json:"source"`
	// ReceivedAt is when lkedge accepted the webhook, Unix milliseconds.
	ReceivedAt int64 `json:"receivedAt"`
	// CreatedAt is LiveKit's event time, Unix seconds.
	CreatedAt   int64        `json:"createdAt"`
	Room        *Room        `json:"room,omitempty"`
	Participant *Participant `json:"participant,omitempty"`
	Track       *Track       `json:"track,omitempty"`
	Egress      *Egress      `json:"egressInfo,omitempty"`
	Ingress     *Ingress     `json:"ingressInfo,omitempty"`
	Meet        *Meet        `json:"meet,omitempty"`
	// Raw is the event exactly as the host sent it.
	Raw []byte `json:"-"`
}

// Types of lkedge's own events.
const (
	// TypeRoomFinished follows a Meet room's room_finished once lkedge has
	// released its recording lock and deleted the room if it was marked.
	TypeRoomFinished = "roomFinished"
)

// Int64 is a 64-bit integer that LiveKit writes as a JSON string.
type Int64 int64

// UnmarshalJSON accepts "123" and 123.
func (n *Int64) UnmarshalJSON(b []byte) error {
	b = bytes.Trim(b, `"`)
	if len(b) == 0 || string(b) == "null" {
		*n = 0
		return nil
	}
	v, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return fmt.Errorf("int64 %q: %w", b, err)
	}
	*n = Int64(v)
	return nil
}

// Room is LiveKit's room object (the TURN password never reaches plugins).
type Room struct {
	SID              string `json:"sid"`
	Name             string `json:"name"`
	EmptyTimeout     uint32 `json:"emptyTimeout"`
	DepartureTimeout uint32 `json:"departureTimeout"`
	MaxParticipants  uint32 `json:"maxParticipants"`
	CreationTime     Int64  `json:"creationTime"`
	CreationTimeMs   Int64  `json:"creationTimeMs"`
	Metadata         string `json:"metadata"`
	NumParticipants  uint32 `json:"numParticipants"`
	NumPublishers    uint32 `json:"numPublishers"`
	ActiveRecording  bool   `json:"activeRecording"`
}

// Participant is LiveKit's participant object.
type Participant struct {
	SID        string            `json:"sid"`
	Identity   string            `json:"identity"`
	Name       string            `json:"name"`
	State      string            `json:"state"`
	Metadata   string            `json:"metadata"`
	JoinedAt   Int64             `json:"joinedAt"`
	JoinedAtMs Int64             `json:"joinedAtMs"`
	Kind       string            `json:"kind"`
	Attributes map[string]string `json:"attributes"`
	Tracks     []Track           `json:"tracks"`
}

// Track is LiveKit's track object.
type Track struct {
	SID      string `json:"sid"`
	Type     string `json:"type"`
	Name     string `json:"name"`
	Source   string `json:"source"`
	MimeType string `json:"mimeType"`
	Muted    bool   `json:"muted"`
	Width    uint32 `json:"width"`
	Height   uint32 `json:"height"`
}

// Egress is LiveKit's egress object.
type Egress struct {
	EgressID       string          `json:"egressId"`
	RoomID         string          `json:"roomId"`
	RoomName       string          `json:"roomName"`
	Status         string          `json:"status"`
	StartedAt      Int64           `json:"startedAt"`
	EndedAt        Int64           `json:"endedAt"`
	UpdatedAt      Int64           `json:"updatedAt"`
	Error          string          `json:"error"`
	ErrorCode      int32           `json:"errorCode"`
	Details        string          `json:"details"`
	FileResults    []FileInfo      `json:"fileResults"`
	StreamResults  []StreamInfo    `json:"streamResults"`
	SegmentResults []SegmentsInfo  `json:"segmentResults"`
	RoomComposite  json.RawMessage `json:"roomComposite,omitempty"`
}

// FileInfo is one file an egress wrote.
type FileInfo struct {
	Filename  string `json:"filename"`
	StartedAt Int64  `json:"startedAt"`
	EndedAt   Int64  `json:"endedAt"`
	Duration  Int64  `json:"duration"`
	Size      Int64  `json:"size"`
	Location  string `json:"location"`
}

// StreamInfo is one stream an egress pushed.
type StreamInfo struct {
	URL       string `json:"url"`
	StartedAt Int64  `json:"startedAt"`
	EndedAt   Int64  `json:"endedAt"`
	Duration  Int64  `json:"duration"`
	Status    string `json:"status"`
	Error     string `json:"error"`
}

// SegmentsInfo is one segmented output of an egress.
type SegmentsInfo struct {
	PlaylistName     string `json:"playlistName"`
	PlaylistLocation string `json:"playlistLocation"`
	Duration         Int64  `json:"duration"`
	Size             Int64  `json:"size"`
	SegmentCount     Int64  `json:"segmentCount"`
	StartedAt        Int64  `json:"startedAt"`
	EndedAt          Int64  `json:"endedAt"`
}

// Ingress is LiveKit's ingress object.
type Ingress struct {
	IngressID           string        `json:"ingressId"`
	Name                string        `json:"name"`
	URL                 string        `json:"url"`
	InputType           string        `json:"inputType"`
	RoomName            string        `json:"roomName"`
	ParticipantIdentity string        `json:"participantIdentity"`
	ParticipantName     string        `json:"participantName"`
	State               *IngressState `json:"state,omitempty"`
}

// IngressState is an ingress's current state.
type IngressState struct {
	Status    string `json:"status"`
	Error     string `json:"error"`
	StartedAt Int64  `json:"startedAt"`
	EndedAt   Int64  `json:"endedAt"`
	RoomID    string `json:"roomId"`
}

// Meet is what lkedge's OpenVidu Meet logic derived for the event.
type Meet struct {
	// Owned tells whether the room belongs to OpenVidu Meet.
	Owned  bool   `json:"owned"`
	RoomID string `json:"roomId"`
	// Recording is OpenVidu Meet's MeetRecordingInfo for a recording
	// egress, byte for byte as stored; decode it with RecordingInfo.
	Recording json.RawMessage `json:"recording,omitempty"`
	Deleted   bool            `json:"deleted"`
	// Stale marks an egress event older than the recording state already
	// stored; notifiers usually stay silent about it.
	Stale bool `json:"stale"`
}

// Recording is OpenVidu Meet's MeetRecordingInfo.
type Recording struct {
	RecordingID string   `json:"recordingId"`
	RoomID      string   `json:"roomId"`
	Status      string   `json:"status"`
	Filename    string   `json:"filename"`
	StartDate   float64  `json:"startDate"`
	EndDate     *float64 `json:"endDate,omitempty"`
	Duration    *float64 `json:"duration,omitempty"`
	Size        *int64   `json:"size,omitempty"`
	ErrorCode   *int     `json:"errorCode,omitempty"`
	Error       string   `json:"error,omitempty"`
	Details     string   `json:"details,omitempty"`
}

// RecordingInfo decodes Recording; it returns nil when there is none.
func (m *Meet) RecordingInfo() (*Recording, error) {
	if m == nil || len(m.Recording) == 0 {
		return nil, nil
	}
	var r Recording
	if err := json.Unmarshal(m.Recording, &r); err != nil {
		return nil, fmt.Errorf("decode meet.recording: %w", err)
	}
	return &r, nil
}

// ParseEvent decodes an event as the host sends it.
func ParseEvent(raw []byte) (*Event, error) {
	ev := &Event{Raw: raw}
	if err := json.Unmarshal(raw, ev); err != nil {
		return nil, fmt.Errorf("decode event: %w", err)
	}
	return ev, nil
}
