// Command slack posts readable Block Kit messages about OpenVidu Meet
// recordings and meetings to a Slack incoming webhook:
//
//   - a recording is ready (egress_ended with meet.recording COMPLETE): its
//     file name, duration and size;
//   - a recording failed (FAILED, ABORTED or LIMIT_REACHED): what happened
//     and LiveKit's error;
//   - a meeting finished (lkedge's roomFinished), and whether lkedge deleted
//     the room.
//
// Other events, and late (stale) egress events, send nothing.
//
// Config key:
//
//	url  the incoming-webhook URL (https://hooks.slack.com/services/...);
//	     it is itself the credential, so keep plugins.yaml private
//
// Secrets: none.
package main

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/lkedge/lkedge/sdk"
)

// HandleLazy: the handler decodes the event's meet object, and only for
// the two event types it reports.
func init() { sdk.HandleLazy(handle) }

// message is a Slack message: text is what notifications and clients
// without Block Kit show. Both are mrkdwn, where &, < and > are markup.
// The struct tags say how appendJSON writes it, as encoding/json would
// (TestAppendJSON): the plugin does not link encoding/json.
type message struct {
	Text   string  `json:"text"`
	Blocks []block `json:"blocks"`
}

type block struct {
	Type     string `json:"type"`
	Text     *text  `json:"text,omitempty"`
	Fields   []text `json:"fields,omitempty"`
	Elements []text `json:"elements,omitempty"`
}

type text struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

func handle(ev *sdk.LazyEvent) error {
	msg, err := compose(ev)
	if err != nil || msg == nil {
		return err
	}
	url := sdk.ConfigOr("url", "")
	if url == "" {
		// No URL is how plugins.yaml leaves this plugin off: it is listed
		// by default, and configured by setting its URL.
		sdk.Log(sdk.LevelDebug, "no url configured; nothing sent")
		return nil
	}
	return sdk.POST(url).Header("Content-Type", "application/json").Body(msg.appendJSON(nil)).Send()
}

func (m *message) appendJSON(b []byte) []byte {
	b = append(b, `{"text":`...)
	b = sdk.AppendJSONString(b, m.Text)
	b = append(b, `,"blocks":`...)
	if m.Blocks == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i := range m.Blocks {
			if i > 0 {
				b = append(b, ',')
			}
			b = m.Blocks[i].appendJSON(b)
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

func (k *block) appendJSON(b []byte) []byte {
	b = append(b, `{"type":`...)
	b = sdk.AppendJSONString(b, k.Type)
	if k.Text != nil {
		b = append(b, `,"text":`...)
		b = k.Text.appendJSON(b)
	}
	b = appendTexts(b, "fields", k.Fields)
	b = appendTexts(b, "elements", k.Elements)
	return append(b, '}')
}

// appendTexts writes a list field with omitempty.
func appendTexts(b []byte, name string, ts []text) []byte {
	if len(ts) == 0 {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':', '[')
	for i := range ts {
		if i > 0 {
			b = append(b, ',')
		}
		b = ts[i].appendJSON(b)
	}
	return append(b, ']')
}

func (t *text) appendJSON(b []byte) []byte {
	b = append(b, `{"type":`...)
	b = sdk.AppendJSONString(b, t.Type)
	b = append(b, `,"text":`...)
	b = sdk.AppendJSONString(b, t.Text)
	return append(b, '}')
}

// compose builds the message for ev, or nil for an event not worth one.
func compose(ev *sdk.LazyEvent) (*message, error) {
	if ev.Type != sdk.TypeEgressEnded && ev.Type != sdk.TypeRoomFinished {
		return nil, nil
	}
	m, err := ev.Meet()
	if err != nil {
		return nil, errors.New("slack: " + err.Error())
	}
	switch {
	case ev.Type == sdk.TypeEgressEnded && m.HasRecording() && !m.Stale:
		rec, err := m.RecordingInfo()
		if err != nil {
			return nil, errors.New("slack: " + err.Error())
		}
		return recordingMessage(rec), nil
	case ev.Type == sdk.TypeRoomFinished && m != nil && m.Owned:
		title := "Meeting finished"
		fields := []text{field("Room", m.RoomID)}
		if m.Deleted {
			fields = append(fields, field("Room deleted", "yes, it was marked for deletion"))
		}
		return &message{
			Text:   escape(title + ": " + m.RoomID),
			Blocks: []block{header(":checkered_flag: " + title), {Type: "section", Fields: fields}},
		}, nil
	}
	return nil, nil
}

// outcomes are the headlines of the final recording statuses.
var outcomes = map[string]string{
	sdk.RecordingComplete:     ":white_check_mark: Recording ready",
	sdk.RecordingFailed:       ":x: Recording failed",
	sdk.RecordingAborted:      ":warning: Recording aborted",
	sdk.RecordingLimitReached: ":hourglass: Recording stopped: limit reached",
}

func recordingMessage(rec *sdk.Recording) *message {
	title, ok := outcomes[rec.Status]
	if !ok {
		return nil // not a final status
	}
	fields := []text{field("Room", rec.RoomID), field("File", rec.Filename)}
	if rec.Duration != nil {
		fields = append(fields, field("Duration", duration(*rec.Duration)))
	}
	if rec.Size != nil {
		fields = append(fields, field("Size", size(*rec.Size)))
	}
	blocks := []block{header(title), {Type: "section", Fields: fields}}
	if rec.Status != sdk.RecordingComplete {
		why := rec.Error
		if why == "" {
			why = rec.Details
		}
		if why == "" {
			why = "no reason given"
		}
		blocks = append(blocks, block{Type: "section", Text: &text{Type: "mrkdwn", Text: "*Error*\n" + escape(why)}})
	}
	blocks = append(blocks, block{Type: "context", Elements: []text{{Type: "mrkdwn", Text: "Recording " + escape(rec.RecordingID)}}})
	plain := strings.SplitN(title, " ", 2)[1] // without the emoji
	return &message{Text: escape(plain + ": " + rec.Filename + " (room " + rec.RoomID + ")"), Blocks: blocks}
}

func header(s string) block {
	return block{Type: "header", Text: &text{Type: "plain_text", Text: s}}
}

func field(name, value string) text {
	return text{Type: "mrkdwn", Text: "*" + name + "*\n" + escape(value)}
}

// escape keeps user data from being read as Slack markup (links, mentions).
var escape = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace

// duration writes seconds as 1h2m5s, rounded to the second (or to the
// tenth below 10 s, where it matters).
func duration(s float64) string {
	d := time.Duration(s * float64(time.Second))
	if d < 10*time.Second {
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// size writes bytes in binary units.
func size(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	v, i := float64(n)/unit, 0
	for v >= unit && i < 3 {
		v /= unit
		i++
	}
	return strconv.FormatFloat(v, 'f', 1, 64) + " " + "KMGT"[i:i+1] + "iB"
}

func main() {}
