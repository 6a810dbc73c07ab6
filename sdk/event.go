package sdk

import (
	"encoding/json"

	"github.com/lkedge/lkedge/sdk/internal/jsonx"
)

// Event is one lkedge event (docs/events.md, model version 1). LiveKit's
// objects keep LiveKit's protojson names: camelCase, 64-bit integers as
// strings (Int64 reads both forms), zero values left out, and enums by
// name, except that protojson writes a value it has no name for as its
// number ("status":99). Each enum has its string type (EgressStatus, ...)
// that reads both forms, as protojson does: a name as it is, a number as
// its name if the SDK knows one, else as its decimal text ("99"), which
// matches no name.
// Fields the SDK does not know are skipped, so a plugin keeps working when
// LiveKit or lkedge adds some; Raw still has them.
type Event struct {
	Version int    `json:"version"`
	ID      string `json:"id"`
	// Type is a LiveKit event name (egress_ended, room_finished, ...) or
	// one of lkedge's own (TypeRoomFinished).
	Type string `json:"type"`
	// Source is "livekit" or "lkedge".
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
	// Raw is the event exactly as the host sent it, for forwarding it
	// untouched or reading a field the SDK does not type.
	Raw []byte `json:"-"`
}

// LiveKit's event names, for comparing with Event.Type.
const (
	TypeRoomStarted = "room_started"
	// TypeRoomFinishedLiveKit is LiveKit's room_finished; lkedge's own
	// TypeRoomFinished follows it once the room's state is settled.
	TypeRoomFinishedLiveKit          = "room_finished"
	TypeParticipantJoined            = "participant_joined"
	TypeParticipantLeft              = "participant_left"
	TypeParticipantConnectionAborted = "participant_connection_aborted"
	TypeTrackPublished               = "track_published"
	TypeTrackUnpublished             = "track_unpublished"
	TypeEgressStarted                = "egress_started"
	TypeEgressUpdated                = "egress_updated"
	TypeEgressEnded                  = "egress_ended"
	TypeIngressStarted               = "ingress_started"
	TypeIngressEnded                 = "ingress_ended"
)

// Types of lkedge's own events.
const (
	// TypeRoomFinished follows a Meet room's room_finished once lkedge has
	// released its recording lock and deleted the room if it was marked.
	// OpenVidu Meet named this event but never sent it.
	TypeRoomFinished = "roomFinished"
)

// unmarshalEnum is the UnmarshalJSON of the enum types: it lets
// encoding/json decode them as ParseEvent does.
func unmarshalEnum(b []byte, p *string, names []string) error {
	d := jsonx.NewDecoder(b)
	v := *p
	if err := d.Enum(&v, names); err != nil {
		return err
	}
	if err := d.End(); err != nil {
		return err
	}
	*p = v
	return nil
}

// Int64 is a 64-bit integer that LiveKit writes as a JSON string (so that
// JavaScript does not round it); it also accepts a plain number.
type Int64 int64

// UnmarshalJSON accepts "123" and 123; null leaves the value unchanged.
// It lets encoding/json decode the SDK's types the same way the SDK does.
func (n *Int64) UnmarshalJSON(b []byte) error {
	d := jsonx.NewDecoder(b)
	v := int64(*n)
	if err := d.QuotedInt64(&v); err != nil {
		return err
	}
	if err := d.End(); err != nil {
		return err
	}
	*n = Int64(v)
	return nil
}

// Room is LiveKit's Room. The TURN password never reaches plugins.
type Room struct {
	SID              string  `json:"sid"`
	Name             string  `json:"name"`
	EmptyTimeout     uint32  `json:"emptyTimeout"`
	DepartureTimeout uint32  `json:"departureTimeout"`
	MaxParticipants  uint32  `json:"maxParticipants"`
	CreationTime     Int64   `json:"creationTime"`   // Unix seconds
	CreationTimeMs   Int64   `json:"creationTimeMs"` // Unix milliseconds
	EnabledCodecs    []Codec `json:"enabledCodecs"`
	// Metadata is whatever the room's creator set; for an OpenVidu Meet
	// room it is JSON with "createdBy".
	Metadata        string        `json:"metadata"`
	NumParticipants uint32        `json:"numParticipants"`
	NumPublishers   uint32        `json:"numPublishers"`
	ActiveRecording bool          `json:"activeRecording"`
	Version         *TimedVersion `json:"version,omitempty"`
}

// Codec is a codec a room allows.
type Codec struct {
	Mime     string `json:"mime"`
	FmtpLine string `json:"fmtpLine"`
}

// TimedVersion orders updates of one LiveKit object.
type TimedVersion struct {
	UnixMicro Int64 `json:"unixMicro"`
	Ticks     int32 `json:"ticks"`
}

// Participant is LiveKit's ParticipantInfo.
type Participant struct {
	SID        string                 `json:"sid"`
	Identity   string                 `json:"identity"`
	State      ParticipantState       `json:"state"`
	Tracks     []Track                `json:"tracks"`
	Metadata   string                 `json:"metadata"`
	JoinedAt   Int64                  `json:"joinedAt"`   // Unix seconds
	JoinedAtMs Int64                  `json:"joinedAtMs"` // Unix milliseconds
	Name       string                 `json:"name"`
	Version    uint32                 `json:"version"`
	Permission *ParticipantPermission `json:"permission,omitempty"`
	Region     string                 `json:"region"`
	// IsPublisher tells that the participant can publish right now.
	IsPublisher      bool                    `json:"isPublisher"`
	Kind             ParticipantKind         `json:"kind"`
	Attributes       map[string]string       `json:"attributes"`
	DisconnectReason DisconnectReason        `json:"disconnectReason"`
	KindDetails      []ParticipantKindDetail `json:"kindDetails"`
	ClientProtocol   int32                   `json:"clientProtocol"`
	Capabilities     []ClientCapability      `json:"capabilities"`
}

// ParticipantPermission is what a participant may do.
type ParticipantPermission struct {
	CanSubscribe      bool          `json:"canSubscribe"`
	CanPublish        bool          `json:"canPublish"`
	CanPublishData    bool          `json:"canPublishData"`
	CanPublishSources []TrackSource `json:"canPublishSources"`
	Hidden            bool          `json:"hidden"`
	// Recorder marks an egress participant (OpenVidu Meet ignores those).
	Recorder              bool `json:"recorder"`
	CanUpdateMetadata     bool `json:"canUpdateMetadata"`
	Agent                 bool `json:"agent"`
	CanSubscribeMetrics   bool `json:"canSubscribeMetrics"`
	CanManageAgentSession bool `json:"canManageAgentSession"`
}

// Track is LiveKit's TrackInfo.
type Track struct {
	SID    string    `json:"sid"`
	Type   TrackType `json:"type"`
	Name   string    `json:"name"`
	Muted  bool      `json:"muted"`
	Width  uint32    `json:"width"`
	Height uint32    `json:"height"`
	// Simulcast is deprecated by LiveKit (see Codecs).
	Simulcast         bool                 `json:"simulcast"`
	DisableDTX        bool                 `json:"disableDtx"`
	Source            TrackSource          `json:"source"`
	Layers            []VideoLayer         `json:"layers"`
	MimeType          string               `json:"mimeType"`
	MID               string               `json:"mid"`
	Codecs            []SimulcastCodecInfo `json:"codecs"`
	Stereo            bool                 `json:"stereo"`
	DisableRED        bool                 `json:"disableRed"`
	Encryption        EncryptionType       `json:"encryption"`
	Stream            string               `json:"stream"`
	Version           *TimedVersion        `json:"version,omitempty"`
	AudioFeatures     []AudioTrackFeature  `json:"audioFeatures"`
	BackupCodecPolicy BackupCodecPolicy    `json:"backupCodecPolicy"`
}

// VideoLayer is one simulcast layer of a video track.
type VideoLayer struct {
	Quality      VideoQuality `json:"quality"`
	Width        uint32       `json:"width"`
	Height       uint32       `json:"height"`
	Bitrate      uint32       `json:"bitrate"`
	SSRC         uint32       `json:"ssrc"`
	SpatialLayer int32        `json:"spatialLayer"`
	RID          string       `json:"rid"`
	RepairSSRC   uint32       `json:"repairSsrc"`
}

// SimulcastCodecInfo is one codec a track is published in.
type SimulcastCodecInfo struct {
	MimeType       string         `json:"mimeType"`
	MID            string         `json:"mid"`
	CID            string         `json:"cid"`
	Layers         []VideoLayer   `json:"layers"`
	VideoLayerMode VideoLayerMode `json:"videoLayerMode"`
	SDPCID         string         `json:"sdpCid"`
}

// Egress is LiveKit's EgressInfo.
type Egress struct {
	EgressID   string           `json:"egressId"`
	RoomID     string           `json:"roomId"`
	RoomName   string           `json:"roomName"`
	SourceType EgressSourceType `json:"sourceType"`
	// Status is absent (empty) for EGRESS_STARTING, the zero value, which
	// LiveKit leaves out. OpenVidu Meet takes a status it does not know,
	// such as a number, as EGRESS_FAILED (meet.recording says FAILED).
	Status    EgressStatus `json:"status"`
	StartedAt Int64        `json:"startedAt"` // Unix nanoseconds
	EndedAt   Int64        `json:"endedAt"`   // Unix nanoseconds
	UpdatedAt Int64        `json:"updatedAt"` // Unix nanoseconds
	// The request that started the egress, one of these, as LiveKit wrote
	// it: they are large, change often and rarely matter to a notifier.
	StartRequest   json.RawMessage `json:"egress,omitempty"`
	Replay         json.RawMessage `json:"replay,omitempty"`
	RoomComposite  json.RawMessage `json:"roomComposite,omitempty"`
	Web            json.RawMessage `json:"web,omitempty"`
	Participant    json.RawMessage `json:"participant,omitempty"`
	TrackComposite json.RawMessage `json:"trackComposite,omitempty"`
	Track          json.RawMessage `json:"track,omitempty"`

	StreamResults  []StreamInfo   `json:"streamResults"`
	FileResults    []FileInfo     `json:"fileResults"`
	SegmentResults []SegmentsInfo `json:"segmentResults"`
	ImageResults   []ImagesInfo   `json:"imageResults"`

	Error             string `json:"error"`
	ErrorCode         int32  `json:"errorCode"`
	Details           string `json:"details"`
	ManifestLocation  string `json:"manifestLocation"`
	BackupStorageUsed bool   `json:"backupStorageUsed"`
	RetryCount        int32  `json:"retryCount"`
}

// FileInfo is one file an egress wrote.
type FileInfo struct {
	Filename  string `json:"filename"`
	StartedAt Int64  `json:"startedAt"` // Unix nanoseconds
	EndedAt   Int64  `json:"endedAt"`   // Unix nanoseconds
	Duration  Int64  `json:"duration"`  // nanoseconds
	Size      Int64  `json:"size"`      // bytes
	Location  string `json:"location"`
}

// StreamInfo is one stream an egress pushed.
type StreamInfo struct {
	URL         string       `json:"url"`
	StartedAt   Int64        `json:"startedAt"`
	EndedAt     Int64        `json:"endedAt"`
	Duration    Int64        `json:"duration"`
	Status      StreamStatus `json:"status"`
	Error       string       `json:"error"`
	LastRetryAt Int64        `json:"lastRetryAt"`
	Retries     uint32       `json:"retries"`
	ID          string       `json:"id"`
}

// SegmentsInfo is one segmented (HLS) output of an egress.
type SegmentsInfo struct {
	PlaylistName         string `json:"playlistName"`
	LivePlaylistName     string `json:"livePlaylistName"`
	Duration             Int64  `json:"duration"`
	Size                 Int64  `json:"size"`
	PlaylistLocation     string `json:"playlistLocation"`
	LivePlaylistLocation string `json:"livePlaylistLocation"`
	SegmentCount         Int64  `json:"segmentCount"`
	StartedAt            Int64  `json:"startedAt"`
	EndedAt              Int64  `json:"endedAt"`
}

// ImagesInfo is one image-sequence output of an egress.
type ImagesInfo struct {
	FilenamePrefix string `json:"filenamePrefix"`
	ImageCount     Int64  `json:"imageCount"`
	StartedAt      Int64  `json:"startedAt"`
	EndedAt        Int64  `json:"endedAt"`
}

// Ingress is LiveKit's IngressInfo.
type Ingress struct {
	IngressID           string          `json:"ingressId"`
	Name                string          `json:"name"`
	StreamKey           string          `json:"streamKey"`
	URL                 string          `json:"url"`
	InputType           IngressInput    `json:"inputType"`
	BypassTranscoding   bool            `json:"bypassTranscoding"`
	EnableTranscoding   *bool           `json:"enableTranscoding,omitempty"`
	Audio               json.RawMessage `json:"audio,omitempty"` // IngressAudioOptions
	Video               json.RawMessage `json:"video,omitempty"` // IngressVideoOptions
	RoomName            string          `json:"roomName"`
	ParticipantIdentity string          `json:"participantIdentity"`
	ParticipantName     string          `json:"participantName"`
	ParticipantMetadata string          `json:"participantMetadata"`
	Reusable            bool            `json:"reusable"`
	State               *IngressState   `json:"state,omitempty"`
	Enabled             *bool           `json:"enabled,omitempty"`
}

// IngressState is an ingress's current state.
type IngressState struct {
	Status IngressStatus `json:"status"`
	Error  string        `json:"error"`
	// Video and Audio describe the input as LiveKit wrote it; they hold
	// doubles that protojson may write as "NaN", which a typed field would
	// have to refuse.
	Video      json.RawMessage `json:"video,omitempty"`
	Audio      json.RawMessage `json:"audio,omitempty"`
	RoomID     string          `json:"roomId"`
	StartedAt  Int64           `json:"startedAt"`
	EndedAt    Int64           `json:"endedAt"`
	UpdatedAt  Int64           `json:"updatedAt"`
	ResourceID string          `json:"resourceId"`
	Tracks     []Track         `json:"tracks"`
}

// Meet is what lkedge's OpenVidu Meet logic derived for the event.
type Meet struct {
	// Owned tells whether the room belongs to OpenVidu Meet.
	Owned  bool   `json:"owned"`
	RoomID string `json:"roomId"`
	// Recording is OpenVidu Meet's MeetRecordingInfo for a recording
	// egress, byte for byte as lkedge stored it, so it can be forwarded
	// unchanged; RecordingInfo decodes it.
	Recording json.RawMessage `json:"recording,omitempty"`
	// Deleted is set on roomFinished when lkedge deleted the room because
	// it was marked for deletion.
	Deleted bool `json:"deleted"`
	// Stale marks an egress event older than the recording state already
	// stored; notifiers usually stay silent about it.
	Stale bool `json:"stale"`
}

// OpenVidu Meet's recording statuses (Recording.Status).
const (
	RecordingStarting     = "STARTING"
	RecordingActive       = "ACTIVE"
	RecordingEnding       = "ENDING"
	RecordingComplete     = "COMPLETE"
	RecordingFailed       = "FAILED"
	RecordingAborted      = "ABORTED"
	RecordingLimitReached = "LIMIT_REACHED"
)

// Recording is OpenVidu Meet's MeetRecordingInfo (spec §6.2). Optional
// numbers are pointers because Meet leaves them out when they are zero.
type Recording struct {
	RecordingID string `json:"recordingId"`
	RoomID      string `json:"roomId"`
	Status      string `json:"status"`
	Filename    string `json:"filename"`
	// StartDate and EndDate are Unix milliseconds, often fractional.
	StartDate float64  `json:"startDate"`
	EndDate   *float64 `json:"endDate,omitempty"`
	// Duration is in seconds.
	Duration  *float64 `json:"duration,omitempty"`
	Size      *int64   `json:"size,omitempty"`
	ErrorCode *int     `json:"errorCode,omitempty"`
	Error     string   `json:"error,omitempty"`
	Details   string   `json:"details,omitempty"`
}

// HasRecording tells whether the event carries a recording: Meet's
// recording egresses do, other events and egresses do not.
func (m *Meet) HasRecording() bool {
	return m != nil && len(m.Recording) > 0 && string(m.Recording) != "null"
}

// RecordingInfo decodes Recording; it returns nil when there is none.
func (m *Meet) RecordingInfo() (*Recording, error) {
	if !m.HasRecording() {
		return nil, nil
	}
	var r Recording
	d := jsonx.NewDecoder(m.Recording)
	if err := decodeRecording(d, &r); err != nil {
		return nil, wrap("decode meet.recording", err)
	}
	if err := d.End(); err != nil {
		return nil, wrap("decode meet.recording", err)
	}
	return &r, nil
}

// ParseEvent decodes an event as the host sends it. It accepts what
// encoding/json.Unmarshal accepts and fills the Event the same way, in a
// fraction of the time.
func ParseEvent(raw []byte) (*Event, error) {
	ev := &Event{Raw: raw}
	d := jsonx.NewDecoder(raw)
	if !d.Null() {
		if err := decodeEvent(d, ev); err != nil {
			return nil, wrap("decode event", err)
		}
	}
	if err := d.End(); err != nil {
		return nil, wrap("decode event", err)
	}
	return ev, nil
}
