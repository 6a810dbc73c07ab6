package meet

import (
	"errors"
	"fmt"
	"strings"

	"github.com/livekit/protocol/livekit"
)

// Status is a MeetRecordingStatus (§6.3).
type Status string

// The recording statuses, in the order a recording goes through them.
const (
	StatusStarting     Status = "STARTING"
	StatusActive       Status = "ACTIVE"
	StatusEnding       Status = "ENDING"
	StatusComplete     Status = "COMPLETE"
	StatusFailed       Status = "FAILED"
	StatusAborted      Status = "ABORTED"
	StatusLimitReached Status = "LIMIT_REACHED"
)

// statusOf maps a LiveKit egress status as extractOpenViduStatus does:
// anything unknown is FAILED.
func statusOf(s livekit.EgressStatus) Status {
	switch s {
	case livekit.EgressStatus_EGRESS_STARTING:
		return StatusStarting
	case livekit.EgressStatus_EGRESS_ACTIVE:
		return StatusActive
	case livekit.EgressStatus_EGRESS_ENDING:
		return StatusEnding
	case livekit.EgressStatus_EGRESS_COMPLETE:
		return StatusComplete
	case livekit.EgressStatus_EGRESS_FAILED:
		return StatusFailed
	case livekit.EgressStatus_EGRESS_ABORTED:
		return StatusAborted
	case livekit.EgressStatus_EGRESS_LIMIT_REACHED:
		return StatusLimitReached
	}
	return StatusFailed
}

// rank orders statuses so that stored metadata never moves backwards: a
// recording only goes forward, and every final status outranks the rest. A
// stored status lkedge does not know ranks lowest, so a real state replaces it.
func (s Status) rank() int {
	switch s {
	case StatusStarting:
		return 0
	case StatusActive:
		return 1
	case StatusEnding:
		return 2
	case StatusComplete, StatusFailed, StatusAborted, StatusLimitReached:
		return rankFinal
	}
	return -1
}

// rankFinal is the rank of every final status.
const rankFinal = 3

// RecordingInfo is MeetRecordingInfo (§6.2). Field order and omitempty
// reproduce JSON.stringify of the reference's object literal byte for byte;
// numbers are float64 because the reference computes them as doubles.
type RecordingInfo struct {
	RecordingID string  `json:"recordingId"`
	RoomID      string  `json:"roomId"`
	Status      Status  `json:"status"`
	Filename    string  `json:"filename"`
	StartDate   float64 `json:"startDate"`
	EndDate     float64 `json:"endDate,omitempty"`
	Duration    float64 `json:"duration,omitempty"`
	Size        float64 `json:"size,omitempty"`
	ErrorCode   int32   `json:"errorCode,omitempty"`
	Error       string  `json:"error,omitempty"`
	Details     string  `json:"details,omitempty"`
}

// IsRecordingEgress tells a Meet recording (file output only) from stream,
// segment, image and mixed egresses, which Meet ignores (§6.1).
func IsRecordingEgress(e *livekit.EgressInfo) bool {
	return e != nil && len(e.FileResults) > 0 && len(e.StreamResults) == 0
}

// ErrBadFilename marks an egress whose file name does not follow Meet's
// "<roomId>--<uid>.<ext>" pattern; the reference throws on it and skips the event.
var ErrBadFilename = errors.New("recording filename has no \"--\"")

// ToRecordingInfo is toRecordingInfo (§6.2).
func ToRecordingInfo(e *livekit.EgressInfo) (*RecordingInfo, error) {
	if !IsRecordingEgress(e) {
		return nil, errors.New("not a recording egress")
	}
	file := e.FileResults[0]
	filename := file.Filename[strings.LastIndexByte(file.Filename, '/')+1:]
	parts := strings.Split(filename, "--")
	if len(parts) < 2 {
		return nil, fmt.Errorf("egress %s file %q: %w", e.EgressId, filename, ErrBadFilename)
	}
	uid, _, _ := strings.Cut(parts[1], ".")
	startNs := e.StartedAt
	if startNs == 0 {
		startNs = e.UpdatedAt
	}
	return &RecordingInfo{
		RecordingID: e.RoomName + "--" + e.EgressId + "--" + uid,
		RoomID:      e.RoomName,
		Status:      statusOf(e.Status),
		Filename:    filename,
		// Nanoseconds become float milliseconds and seconds exactly as the
		// reference's Number(bigint) * (1/1e6) does; integer division would
		// change the published numbers.
		StartDate: float64(startNs) * (1.0 / 1e6),
		EndDate:   float64(e.EndedAt) * (1.0 / 1e6),
		Duration:  float64(file.Duration) * (1.0 / 1e9),
		Size:      float64(file.Size),
		ErrorCode: e.ErrorCode,
		Error:     e.Error,
		Details:   e.Details,
	}, nil
}

// MetadataKey is the key of a recording's metadata object relative to the
// sub-bucket (§6.4 buildMetadataFilePath), from its recording id.
func MetadataKey(recordingID string) (string, error) {
	parts := strings.Split(recordingID, "--")
	if len(parts) < 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return "", fmt.Errorf("invalid recordingId format: %s", recordingID)
	}
	return "recordings/.metadata/" + parts[0] + "/" + parts[1] + "/" + parts[2] + ".json", nil
}

// signal is the data message payload OpenVidu components expect (§10.1).
type signal struct {
	ID        string  `json:"id"`
	RoomName  string  `json:"roomName"`
	RoomID    string  `json:"roomId"`
	Status    string  `json:"status"`
	Filename  string  `json:"filename"`
	StartedAt float64 `json:"startedAt"`
	EndedAt   float64 `json:"endedAt,omitempty"`
	Duration  float64 `json:"duration,omitempty"`
	Size      float64 `json:"size,omitempty"`
}

// Signal returns the topic and payload of the data message that tells a
// room's participants about the recording (§10.1).
func (r *RecordingInfo) Signal() (topic string, payload []byte, err error) {
	var status string
	switch r.Status {
	case StatusStarting:
		topic, status = "recordingStarting", "STARTING"
	case StatusActive:
		topic, status = "recordingStarted", "STARTED"
	case StatusEnding:
		topic, status = "recordingStopping", "STOPPING"
	case StatusComplete, StatusLimitReached:
		topic, status = "recordingStopped", "READY"
	default:
		topic, status = "recordingFailed", "FAILED"
	}
	payload, err = marshalJS(signal{
		ID: r.RecordingID, RoomName: r.RoomID, RoomID: r.RoomID, Status: status, Filename: r.Filename,
		StartedAt: r.StartDate, EndedAt: r.EndDate, Duration: r.Duration, Size: r.Size,
	})
	if err != nil {
		return "", nil, fmt.Errorf("encode recording signal: %w", err)
	}
	return topic, payload, nil
}
