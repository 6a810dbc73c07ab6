package sdk

import (
	"github.com/lkedge/lkedge/sdk/internal/jsonx"
)

// One decode function per type: a switch over the JSON names, so that no
// reflection runs in the guest. Each names list is the type's JSON names,
// for the case-insensitive match that encoding/json also makes.

var eventNames = []string{"version", "id", "type", "source", "receivedAt", "createdAt", "room", "participant", "track", "egressInfo", "ingressInfo", "meet"}

func decodeEvent(d *jsonx.Decoder, ev *Event) error {
	return d.Object(eventNames, func(key string) error {
		switch key {
		case "version":
			return d.Int(&ev.Version)
		case "id":
			return d.String(&ev.ID)
		case "type":
			return d.String(&ev.Type)
		case "source":
			return d.String(&ev.Source)
		case "receivedAt":
			return d.Int64(&ev.ReceivedAt)
		case "createdAt":
			return d.Int64(&ev.CreatedAt)
		case "room":
			return jsonx.Ptr(d, &ev.Room, decodeRoom)
		case "participant":
			return jsonx.Ptr(d, &ev.Participant, decodeParticipant)
		case "track":
			return jsonx.Ptr(d, &ev.Track, decodeTrack)
		case "egressInfo":
			return jsonx.Ptr(d, &ev.Egress, decodeEgress)
		case "ingressInfo":
			return jsonx.Ptr(d, &ev.Ingress, decodeIngress)
		case "meet":
			return jsonx.Ptr(d, &ev.Meet, decodeMeet)
		}
		return d.Unknown()
	})
}

func decodeInt64(d *jsonx.Decoder, n *Int64) error { return d.QuotedInt64((*int64)(n)) }

var roomNames = []string{"sid", "name", "emptyTimeout", "departureTimeout", "maxParticipants", "creationTime", "creationTimeMs", "enabledCodecs", "metadata", "numParticipants", "numPublishers", "activeRecording", "version"}

func decodeRoom(d *jsonx.Decoder, r *Room) error {
	return d.Object(roomNames, func(key string) error {
		switch key {
		case "sid":
			return d.String(&r.SID)
		case "name":
			return d.String(&r.Name)
		case "emptyTimeout":
			return d.Uint32(&r.EmptyTimeout)
		case "departureTimeout":
			return d.Uint32(&r.DepartureTimeout)
		case "maxParticipants":
			return d.Uint32(&r.MaxParticipants)
		case "creationTime":
			return decodeInt64(d, &r.CreationTime)
		case "creationTimeMs":
			return decodeInt64(d, &r.CreationTimeMs)
		case "enabledCodecs":
			return jsonx.Slice(d, &r.EnabledCodecs, decodeCodec)
		case "metadata":
			return d.String(&r.Metadata)
		case "numParticipants":
			return d.Uint32(&r.NumParticipants)
		case "numPublishers":
			return d.Uint32(&r.NumPublishers)
		case "activeRecording":
			return d.Bool(&r.ActiveRecording)
		case "version":
			return jsonx.Ptr(d, &r.Version, decodeTimedVersion)
		}
		return d.Unknown()
	})
}

var codecNames = []string{"mime", "fmtpLine"}

func decodeCodec(d *jsonx.Decoder, c *Codec) error {
	return d.Object(codecNames, func(key string) error {
		switch key {
		case "mime":
			return d.String(&c.Mime)
		case "fmtpLine":
			return d.String(&c.FmtpLine)
		}
		return d.Unknown()
	})
}

var timedVersionNames = []string{"unixMicro", "ticks"}

func decodeTimedVersion(d *jsonx.Decoder, v *TimedVersion) error {
	return d.Object(timedVersionNames, func(key string) error {
		switch key {
		case "unixMicro":
			return decodeInt64(d, &v.UnixMicro)
		case "ticks":
			return d.Int32(&v.Ticks)
		}
		return d.Unknown()
	})
}

var participantNames = []string{"sid", "identity", "state", "tracks", "metadata", "joinedAt", "joinedAtMs", "name", "version", "permission", "region", "isPublisher", "kind", "attributes", "disconnectReason", "kindDetails", "clientProtocol", "capabilities"}

func decodeParticipant(d *jsonx.Decoder, p *Participant) error {
	return d.Object(participantNames, func(key string) error {
		switch key {
		case "sid":
			return d.String(&p.SID)
		case "identity":
			return d.String(&p.Identity)
		case "state":
			return decodeParticipantState(d, &p.State)
		case "tracks":
			return jsonx.Slice(d, &p.Tracks, decodeTrack)
		case "metadata":
			return d.String(&p.Metadata)
		case "joinedAt":
			return decodeInt64(d, &p.JoinedAt)
		case "joinedAtMs":
			return decodeInt64(d, &p.JoinedAtMs)
		case "name":
			return d.String(&p.Name)
		case "version":
			return d.Uint32(&p.Version)
		case "permission":
			return jsonx.Ptr(d, &p.Permission, decodePermission)
		case "region":
			return d.String(&p.Region)
		case "isPublisher":
			return d.Bool(&p.IsPublisher)
		case "kind":
			return decodeParticipantKind(d, &p.Kind)
		case "attributes":
			return d.StringMap(&p.Attributes)
		case "disconnectReason":
			return decodeDisconnectReason(d, &p.DisconnectReason)
		case "kindDetails":
			return jsonx.Slice(d, &p.KindDetails, decodeParticipantKindDetail)
		case "clientProtocol":
			return d.Int32(&p.ClientProtocol)
		case "capabilities":
			return jsonx.Slice(d, &p.Capabilities, decodeClientCapability)
		}
		return d.Unknown()
	})
}

var permissionNames = []string{"canSubscribe", "canPublish", "canPublishData", "canPublishSources", "hidden", "recorder", "canUpdateMetadata", "agent", "canSubscribeMetrics", "canManageAgentSession"}

func decodePermission(d *jsonx.Decoder, p *ParticipantPermission) error {
	return d.Object(permissionNames, func(key string) error {
		switch key {
		case "canSubscribe":
			return d.Bool(&p.CanSubscribe)
		case "canPublish":
			return d.Bool(&p.CanPublish)
		case "canPublishData":
			return d.Bool(&p.CanPublishData)
		case "canPublishSources":
			return jsonx.Slice(d, &p.CanPublishSources, decodeTrackSource)
		case "hidden":
			return d.Bool(&p.Hidden)
		case "recorder":
			return d.Bool(&p.Recorder)
		case "canUpdateMetadata":
			return d.Bool(&p.CanUpdateMetadata)
		case "agent":
			return d.Bool(&p.Agent)
		case "canSubscribeMetrics":
			return d.Bool(&p.CanSubscribeMetrics)
		case "canManageAgentSession":
			return d.Bool(&p.CanManageAgentSession)
		}
		return d.Unknown()
	})
}

var trackNames = []string{"sid", "type", "name", "muted", "width", "height", "simulcast", "disableDtx", "source", "layers", "mimeType", "mid", "codecs", "stereo", "disableRed", "encryption", "stream", "version", "audioFeatures", "backupCodecPolicy"}

func decodeTrack(d *jsonx.Decoder, t *Track) error {
	return d.Object(trackNames, func(key string) error {
		switch key {
		case "sid":
			return d.String(&t.SID)
		case "type":
			return decodeTrackType(d, &t.Type)
		case "name":
			return d.String(&t.Name)
		case "muted":
			return d.Bool(&t.Muted)
		case "width":
			return d.Uint32(&t.Width)
		case "height":
			return d.Uint32(&t.Height)
		case "simulcast":
			return d.Bool(&t.Simulcast)
		case "disableDtx":
			return d.Bool(&t.DisableDTX)
		case "source":
			return decodeTrackSource(d, &t.Source)
		case "layers":
			return jsonx.Slice(d, &t.Layers, decodeVideoLayer)
		case "mimeType":
			return d.String(&t.MimeType)
		case "mid":
			return d.String(&t.MID)
		case "codecs":
			return jsonx.Slice(d, &t.Codecs, decodeSimulcastCodec)
		case "stereo":
			return d.Bool(&t.Stereo)
		case "disableRed":
			return d.Bool(&t.DisableRED)
		case "encryption":
			return decodeEncryptionType(d, &t.Encryption)
		case "stream":
			return d.String(&t.Stream)
		case "version":
			return jsonx.Ptr(d, &t.Version, decodeTimedVersion)
		case "audioFeatures":
			return jsonx.Slice(d, &t.AudioFeatures, decodeAudioTrackFeature)
		case "backupCodecPolicy":
			return decodeBackupCodecPolicy(d, &t.BackupCodecPolicy)
		}
		return d.Unknown()
	})
}

var videoLayerNames = []string{"quality", "width", "height", "bitrate", "ssrc", "spatialLayer", "rid", "repairSsrc"}

func decodeVideoLayer(d *jsonx.Decoder, l *VideoLayer) error {
	return d.Object(videoLayerNames, func(key string) error {
		switch key {
		case "quality":
			return decodeVideoQuality(d, &l.Quality)
		case "width":
			return d.Uint32(&l.Width)
		case "height":
			return d.Uint32(&l.Height)
		case "bitrate":
			return d.Uint32(&l.Bitrate)
		case "ssrc":
			return d.Uint32(&l.SSRC)
		case "spatialLayer":
			return d.Int32(&l.SpatialLayer)
		case "rid":
			return d.String(&l.RID)
		case "repairSsrc":
			return d.Uint32(&l.RepairSSRC)
		}
		return d.Unknown()
	})
}

var simulcastCodecNames = []string{"mimeType", "mid", "cid", "layers", "videoLayerMode", "sdpCid"}

func decodeSimulcastCodec(d *jsonx.Decoder, c *SimulcastCodecInfo) error {
	return d.Object(simulcastCodecNames, func(key string) error {
		switch key {
		case "mimeType":
			return d.String(&c.MimeType)
		case "mid":
			return d.String(&c.MID)
		case "cid":
			return d.String(&c.CID)
		case "layers":
			return jsonx.Slice(d, &c.Layers, decodeVideoLayer)
		case "videoLayerMode":
			return decodeVideoLayerMode(d, &c.VideoLayerMode)
		case "sdpCid":
			return d.String(&c.SDPCID)
		}
		return d.Unknown()
	})
}

var egressNames = []string{"egressId", "roomId", "roomName", "sourceType", "status", "startedAt", "endedAt", "updatedAt", "egress", "replay", "roomComposite", "web", "participant", "trackComposite", "track", "streamResults", "fileResults", "segmentResults", "imageResults", "error", "errorCode", "details", "manifestLocation", "backupStorageUsed", "retryCount"}

func decodeEgress(d *jsonx.Decoder, e *Egress) error {
	return d.Object(egressNames, func(key string) error {
		switch key {
		case "egressId":
			return d.String(&e.EgressID)
		case "roomId":
			return d.String(&e.RoomID)
		case "roomName":
			return d.String(&e.RoomName)
		case "sourceType":
			return decodeEgressSourceType(d, &e.SourceType)
		case "status":
			return decodeEgressStatus(d, &e.Status)
		case "startedAt":
			return decodeInt64(d, &e.StartedAt)
		case "endedAt":
			return decodeInt64(d, &e.EndedAt)
		case "updatedAt":
			return decodeInt64(d, &e.UpdatedAt)
		case "egress":
			return d.RawValue((*[]byte)(&e.StartRequest))
		case "replay":
			return d.RawValue((*[]byte)(&e.Replay))
		case "roomComposite":
			return d.RawValue((*[]byte)(&e.RoomComposite))
		case "web":
			return d.RawValue((*[]byte)(&e.Web))
		case "participant":
			return d.RawValue((*[]byte)(&e.Participant))
		case "trackComposite":
			return d.RawValue((*[]byte)(&e.TrackComposite))
		case "track":
			return d.RawValue((*[]byte)(&e.Track))
		case "streamResults":
			return jsonx.Slice(d, &e.StreamResults, decodeStreamInfo)
		case "fileResults":
			return jsonx.Slice(d, &e.FileResults, decodeFileInfo)
		case "segmentResults":
			return jsonx.Slice(d, &e.SegmentResults, decodeSegmentsInfo)
		case "imageResults":
			return jsonx.Slice(d, &e.ImageResults, decodeImagesInfo)
		case "error":
			return d.String(&e.Error)
		case "errorCode":
			return d.Int32(&e.ErrorCode)
		case "details":
			return d.String(&e.Details)
		case "manifestLocation":
			return d.String(&e.ManifestLocation)
		case "backupStorageUsed":
			return d.Bool(&e.BackupStorageUsed)
		case "retryCount":
			return d.Int32(&e.RetryCount)
		}
		return d.Unknown()
	})
}

var fileInfoNames = []string{"filename", "startedAt", "endedAt", "duration", "size", "location"}

func decodeFileInfo(d *jsonx.Decoder, f *FileInfo) error {
	return d.Object(fileInfoNames, func(key string) error {
		switch key {
		case "filename":
			return d.String(&f.Filename)
		case "startedAt":
			return decodeInt64(d, &f.StartedAt)
		case "endedAt":
			return decodeInt64(d, &f.EndedAt)
		case "duration":
			return decodeInt64(d, &f.Duration)
		case "size":
			return decodeInt64(d, &f.Size)
		case "location":
			return d.String(&f.Location)
		}
		return d.Unknown()
	})
}

var streamInfoNames = []string{"url", "startedAt", "endedAt", "duration", "status", "error", "lastRetryAt", "retries", "id"}

func decodeStreamInfo(d *jsonx.Decoder, s *StreamInfo) error {
	return d.Object(streamInfoNames, func(key string) error {
		switch key {
		case "url":
			return d.String(&s.URL)
		case "startedAt":
			return decodeInt64(d, &s.StartedAt)
		case "endedAt":
			return decodeInt64(d, &s.EndedAt)
		case "duration":
			return decodeInt64(d, &s.Duration)
		case "status":
			return decodeStreamStatus(d, &s.Status)
		case "error":
			return d.String(&s.Error)
		case "lastRetryAt":
			return decodeInt64(d, &s.LastRetryAt)
		case "retries":
			return d.Uint32(&s.Retries)
		case "id":
			return d.String(&s.ID)
		}
		return d.Unknown()
	})
}

var segmentsInfoNames = []string{"playlistName", "livePlaylistName", "duration", "size", "playlistLocation", "livePlaylistLocation", "segmentCount", "startedAt", "endedAt"}

func decodeSegmentsInfo(d *jsonx.Decoder, s *SegmentsInfo) error {
	return d.Object(segmentsInfoNames, func(key string) error {
		switch key {
		case "playlistName":
			return d.String(&s.PlaylistName)
		case "livePlaylistName":
			return d.String(&s.LivePlaylistName)
		case "duration":
			return decodeInt64(d, &s.Duration)
		case "size":
			return decodeInt64(d, &s.Size)
		case "playlistLocation":
			return d.String(&s.PlaylistLocation)
		case "livePlaylistLocation":
			return d.String(&s.LivePlaylistLocation)
		case "segmentCount":
			return decodeInt64(d, &s.SegmentCount)
		case "startedAt":
			return decodeInt64(d, &s.StartedAt)
		case "endedAt":
			return decodeInt64(d, &s.EndedAt)
		}
		return d.Unknown()
	})
}

var imagesInfoNames = []string{"filenamePrefix", "imageCount", "startedAt", "endedAt"}

func decodeImagesInfo(d *jsonx.Decoder, im *ImagesInfo) error {
	return d.Object(imagesInfoNames, func(key string) error {
		switch key {
		case "filenamePrefix":
			return d.String(&im.FilenamePrefix)
		case "imageCount":
			return decodeInt64(d, &im.ImageCount)
		case "startedAt":
			return decodeInt64(d, &im.StartedAt)
		case "endedAt":
			return decodeInt64(d, &im.EndedAt)
		}
		return d.Unknown()
	})
}

var ingressNames = []string{"ingressId", "name", "streamKey", "url", "inputType", "bypassTranscoding", "enableTranscoding", "audio", "video", "roomName", "participantIdentity", "participantName", "participantMetadata", "reusable", "state", "enabled"}

func decodeIngress(d *jsonx.Decoder, in *Ingress) error {
	return d.Object(ingressNames, func(key string) error {
		switch key {
		case "ingressId":
			return d.String(&in.IngressID)
		case "name":
			return d.String(&in.Name)
		case "streamKey":
			return d.String(&in.StreamKey)
		case "url":
			return d.String(&in.URL)
		case "inputType":
			return decodeIngressInput(d, &in.InputType)
		case "bypassTranscoding":
			return d.Bool(&in.BypassTranscoding)
		case "enableTranscoding":
			return jsonx.Ptr(d, &in.EnableTranscoding, (*jsonx.Decoder).Bool)
		case "audio":
			return d.RawValue((*[]byte)(&in.Audio))
		case "video":
			return d.RawValue((*[]byte)(&in.Video))
		case "roomName":
			return d.String(&in.RoomName)
		case "participantIdentity":
			return d.String(&in.ParticipantIdentity)
		case "participantName":
			return d.String(&in.ParticipantName)
		case "participantMetadata":
			return d.String(&in.ParticipantMetadata)
		case "reusable":
			return d.Bool(&in.Reusable)
		case "state":
			return jsonx.Ptr(d, &in.State, decodeIngressState)
		case "enabled":
			return jsonx.Ptr(d, &in.Enabled, (*jsonx.Decoder).Bool)
		}
		return d.Unknown()
	})
}

var ingressStateNames = []string{"status", "error", "video", "audio", "roomId", "startedAt", "endedAt", "updatedAt", "resourceId", "tracks"}

func decodeIngressState(d *jsonx.Decoder, s *IngressState) error {
	return d.Object(ingressStateNames, func(key string) error {
		switch key {
		case "status":
			return decodeIngressStatus(d, &s.Status)
		case "error":
			return d.String(&s.Error)
		case "video":
			return d.RawValue((*[]byte)(&s.Video))
		case "audio":
			return d.RawValue((*[]byte)(&s.Audio))
		case "roomId":
			return d.String(&s.RoomID)
		case "startedAt":
			return decodeInt64(d, &s.StartedAt)
		case "endedAt":
			return decodeInt64(d, &s.EndedAt)
		case "updatedAt":
			return decodeInt64(d, &s.UpdatedAt)
		case "resourceId":
			return d.String(&s.ResourceID)
		case "tracks":
			return jsonx.Slice(d, &s.Tracks, decodeTrack)
		}
		return d.Unknown()
	})
}

var meetNames = []string{"owned", "roomId", "recording", "deleted", "stale"}

func decodeMeet(d *jsonx.Decoder, m *Meet) error {
	return d.Object(meetNames, func(key string) error {
		switch key {
		case "owned":
			return d.Bool(&m.Owned)
		case "roomId":
			return d.String(&m.RoomID)
		case "recording":
			return d.RawValue((*[]byte)(&m.Recording))
		case "deleted":
			return d.Bool(&m.Deleted)
		case "stale":
			return d.Bool(&m.Stale)
		}
		return d.Unknown()
	})
}

var recordingNames = []string{"recordingId", "roomId", "status", "filename", "startDate", "endDate", "duration", "size", "errorCode", "error", "details"}

func decodeRecording(d *jsonx.Decoder, r *Recording) error {
	return d.Object(recordingNames, func(key string) error {
		switch key {
		case "recordingId":
			return d.String(&r.RecordingID)
		case "roomId":
			return d.String(&r.RoomID)
		case "status":
			return d.String(&r.Status)
		case "filename":
			return d.String(&r.Filename)
		case "startDate":
			return d.Float64(&r.StartDate)
		case "endDate":
			return jsonx.Ptr(d, &r.EndDate, (*jsonx.Decoder).Float64)
		case "duration":
			return jsonx.Ptr(d, &r.Duration, (*jsonx.Decoder).Float64)
		case "size":
			return jsonx.Ptr(d, &r.Size, (*jsonx.Decoder).Int64)
		case "errorCode":
			return jsonx.Ptr(d, &r.ErrorCode, (*jsonx.Decoder).Int)
		case "error":
			return d.String(&r.Error)
		case "details":
			return d.String(&r.Details)
		}
		return d.Unknown()
	})
}
