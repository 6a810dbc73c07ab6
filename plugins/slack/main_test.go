package main

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/lkedge/lkedge/plugins/internal/plugintests"
)

var slackURL = map[string]string{"url": "https://hooks.slack.com/services/T000/B000/XXXX"}

var cases = []plugintests.Case{
	{Name: "recording_ready", Event: "egress_ended.json", Config: slackURL},
	{Name: "recording_failed", Event: "egress_ended_failed.json", Config: slackURL},
	{Name: "recording_aborted", Event: "egress_ended_aborted.json", Config: slackURL},
	{Name: "recording_limit_reached", Event: "egress_ended_limit.json", Config: slackURL},
	{Name: "meeting_finished_room_deleted", Event: "room_finished_lkedge.json", Config: slackURL},
	{Name: "meeting_finished_escaped", Event: "room_finished_lkedge_kept.json", Config: slackURL},
	{Name: "recording_started_is_quiet", Event: "egress_started.json", Config: slackURL},
	{Name: "recording_updated_is_quiet", Event: "egress_updated.json", Config: slackURL},
	{Name: "stale_is_quiet", Event: "egress_updated_stale.json", Config: slackURL},
	{Name: "other_egress_is_quiet", Event: "egress_ended_not_meet.json", Config: slackURL},
	{Name: "livekit_room_finished_is_quiet", Event: "room_finished.json", Config: slackURL},
	{Name: "participant_is_quiet", Event: "participant_joined.json", Config: slackURL},
	{Name: "no_url", Event: "egress_ended.json", Config: map[string]string{}},
}

func TestHandle(t *testing.T) { plugintests.Native(t, handle, cases) }

func TestThroughHost(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the plugin")
	}
	plugintests.Host(t, ".", cases)
}

func TestFormats(t *testing.T) {
	for _, tc := range []struct {
		got, want string
	}{
		{duration(10.530865198), "11s"},
		{duration(3.14159), "3.1s"},
		{duration(0.04), "0s"},
		{duration(3600), "1h0m0s"},
		{duration(3725.4), "1h2m5s"},
		{size(0), "0 B"},
		{size(1023), "1023 B"},
		{size(1024), "1.0 KiB"},
		{size(1048576), "1.0 MiB"},
		{size(1610612736), "1.5 GiB"},
		{size(1 << 50), "1024.0 TiB"},
		{escape("a <b> & c"), "a &lt;b&gt; &amp; c"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

// TestAppendJSON holds appendJSON to encoding/json's bytes (HTML escaping
// off), which the plugin sent before it stopped linking encoding/json.
func TestAppendJSON(t *testing.T) {
	odd := "quote \" backslash \\ <b>&amp; ctl \x01\b\f\n\t bad \xff sep \u2028 é😀"
	for _, m := range []*message{
		{},
		{Text: odd},
		{Text: "t", Blocks: []block{}},
		{Text: "t", Blocks: []block{{Type: "divider"}}},
		{Text: "t", Blocks: []block{
			header(odd),
			{Type: "section", Fields: []text{field("Room", odd), field("", "")}},
			{Type: "section", Text: &text{}, Fields: []text{}, Elements: []text{}},
			{Type: "context", Elements: []text{{Type: "mrkdwn", Text: odd}, {}}},
		}},
	} {
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(m); err != nil {
			t.Fatal(err)
		}
		if got := m.appendJSON(nil); !bytes.Equal(got, bytes.TrimSuffix(want.Bytes(), []byte("\n"))) {
			t.Errorf("appendJSON = %s\nwant         %s", got, want.Bytes())
		}
	}
}
