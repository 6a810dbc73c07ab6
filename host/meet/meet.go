// Package meet is the OpenVidu Meet recording and room logic, run natively
// on every LiveKit event: ownership (§4), recording metadata (§5.1, §6),
// data messages to the room (§9.2, §10.1), the recording lock (§10.2), the
// recording_active system event (§11.3) and room deletion after the meeting
// (§5.4). Section numbers refer to docs/openvidu-meet.md's source, the
// behavioural specification of the reference.
package meet

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/livekit/protocol/livekit"

	"github.com/lkedge/lkedge/host/coord"
	"github.com/lkedge/lkedge/host/event"
	"github.com/lkedge/lkedge/host/metrics"
	"github.com/lkedge/lkedge/host/store"
)

// LiveKit is the part of the LiveKit server API the Meet logic calls.
type LiveKit interface {
	// GetRoom returns the room called name, or nil if LiveKit has none.
	GetRoom(ctx context.Context, name string) (*livekit.Room, error)
	// ListActiveEgress lists room's egresses LiveKit reports as active
	// (starting, active or ending), of any kind.
	ListActiveEgress(ctx context.Context, room string) ([]*livekit.EgressInfo, error)
	// SendData sends a reliable data message (to everyone when sids is empty).
	SendData(ctx context.Context, room, topic string, data []byte, identities []string) error
	// DeleteRoom closes the room; a room that does not exist is not an error.
	DeleteRoom(ctx context.Context, room string) error
}

// Options configures the Meet logic with the reference's settings.
type Options struct {
	NameID    string // MEET_NAME_ID: the createdBy value of Meet rooms
	Subbucket string // MEET_S3_SUBBUCKET: prefix of every object key
	// OwnershipTimeout bounds the LiveKit lookup of an egress event's room,
	// so a slow LiveKit cannot stall the decision (default 1 s).
	OwnershipTimeout time.Duration
	// DeleteAttempts is how often room deletion is tried before the event is
	// handed back for a later retry (default 5, 200 ms doubling).
	DeleteAttempts int
	DeleteBackoff  time.Duration
	// OwnershipCacheTTL is how long the ownership check trusts a Meet room
	// record it found, without reading it again (default 10 s; negative
	// disables the cache).
	OwnershipCacheTTL time.Duration
	// Now is the clock the orphan-lock collector ages locks by and the
	// ownership cache expires by (default time.Now).
	Now func() time.Time
}

// Handler runs the Meet logic.
type Handler struct {
	store store.Store
	coord coord.Coordinator
	lk    LiveKit
	opts  Options
	// rooms maps a room name to when its Meet room record, last seen
	// existing, must be read again (see owned).
	rooms *cache[string, time.Time]
	// recordings maps a recording metadata key to the stored state this
	// replica last wrote or read (see saveRecording).
	recordings *cache[string, recState]
}

// New returns a Handler over the given store, coordinator and LiveKit API.
func New(s store.Store, c coord.Coordinator, lk LiveKit, opts Options) *Handler {
	if opts.OwnershipTimeout <= 0 {
		opts.OwnershipTimeout = time.Second
	}
	if opts.DeleteAttempts <= 0 {
		opts.DeleteAttempts = 5
	}
	if opts.DeleteBackoff <= 0 {
		opts.DeleteBackoff = 200 * time.Millisecond
	}
	if opts.OwnershipCacheTTL == 0 {
		opts.OwnershipCacheTTL = 10 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Handler{
		store: s, coord: c, lk: lk, opts: opts,
		rooms:      newCache[string, time.Time](cacheSize),
		recordings: newCache[string, recState](cacheSize),
	}
}

// RecordingLockName is the coordination lock held while a room records
// (the reference's ov_meet_lock:recording_active_<roomId>, §10.2).
func RecordingLockName(roomID string) string { return "recording_active_" + roomID }

// EventRecordingActive is the system event that completes a pending
// start-recording request (§11.3); its payload is the RecordingInfo JSON.
const EventRecordingActive = "recording_active"

// key makes a key absolute the way S3Service.getFullKey does (§7.1).
func (h *Handler) key(name string) string {
	if strings.HasPrefix(name, h.opts.Subbucket) {
		return name
	}
	return h.opts.Subbucket + "/" + name
}

// Handle runs the Meet logic for ev, attaches the Meet view to it and
// returns the events lkedge derives from it (roomFinished). An error means
// the event must be tried again later: only storage failures are retried,
// because everything Handle writes is idempotent and side effects on
// LiveKit happen after the writes; LiveKit failures are logged and counted.
func (h *Handler) Handle(ctx context.Context, ev *event.Event, log *slog.Logger) ([]*event.Event, error) {
	owned, err := h.owned(ctx, ev, log)
	if err != nil {
		return nil, err
	}
	ev.Meet = &event.Meet{Owned: owned, RoomID: ev.RoomName()}
	if !owned {
		log.Debug("event skipped: not related to OpenVidu Meet")
		return nil, nil
	}
	// Only Meet's events are decoded in full; a body that fails here was
	// valid JSON but not LiveKit's message, and stays so: the error wraps
	// event.ErrMalformed, which the pipeline does not retry.
	wh, err := ev.LiveKit()
	if err != nil {
		return nil, err
	}
	switch wh.Event {
	case "egress_started", "egress_updated", "egress_ended":
		return nil, h.recordingEgress(ctx, ev, wh.EgressInfo, log)
	case "participant_joined":
		if wh.Room != nil {
			h.participantJoined(ctx, wh.Room, wh.Participant, log)
		}
		return nil, nil
	case "room_finished":
		if wh.Room != nil {
			return h.roomFinished(ctx, ev, wh.Room.Name, log)
		}
	}
	return nil, nil
}

// owned decides whether ev concerns an OpenVidu Meet room (§4), with
// QUIRK 1 fixed: an egress event still belongs to Meet when its LiveKit room
// is gone (or LiveKit cannot answer) but the Meet room record exists.
func (h *Handler) owned(ctx context.Context, ev *event.Event, log *slog.Logger) (bool, error) {
	if metadata, ok := ev.RoomMetadata(); ok {
		return h.createdByMeet(metadata, log), nil
	}
	name := ev.RoomName() // of the egress or ingress
	if name == "" {
		return false, nil
	}
	// A room record found a moment ago still exists: it only disappears
	// when the room is deleted after its meeting, and the replica that
	// deletes it forgets it at once (deleteRoom). So only a deletion by
	// another replica or by Meet itself goes unseen, for at most the TTL,
	// during which the room's late egress events are taken as Meet's, as
	// they would have been a moment earlier. A missing record is never
	// cached: Meet may create it at any time.
	if until, ok := h.rooms.get(name); ok && h.opts.Now().Before(until) {
		metrics.MeetCache.WithLabelValues("ownership", "hit").Inc()
		return true, nil
	}
	metrics.MeetCache.WithLabelValues("ownership", "miss").Inc()
	gen := h.rooms.generation()
	_, storeErr := h.store.Get(ctx, h.key("rooms/"+name+"/"+name+".json"))
	if storeErr == nil {
		if h.opts.OwnershipCacheTTL > 0 {
			h.rooms.add(name, h.opts.Now().Add(h.opts.OwnershipCacheTTL), gen)
		}
		return true, nil
	}
	if errors.Is(storeErr, store.ErrInvalidKey) {
		storeErr = store.ErrNotFound // no record can exist under that name
	}
	if !errors.Is(storeErr, store.ErrNotFound) {
		metrics.StoreErrors.WithLabelValues("get").Inc()
		log.Warn("ownership: reading the Meet room record failed; asking LiveKit", "err", storeErr)
	}
	lctx, cancel := context.WithTimeout(ctx, h.opts.OwnershipTimeout)
	defer cancel()
	room, err := h.lk.GetRoom(lctx, name)
	switch {
	case err != nil:
		metrics.LiveKitErrors.WithLabelValues("ListRooms").Inc()
		log.Warn("ownership: LiveKit room lookup failed", "err", err)
	case room != nil && h.createdByMeet(room.Metadata, log):
		return true, nil
	}
	if !errors.Is(storeErr, store.ErrNotFound) {
		// Neither source could confirm: the record may exist, so try later
		// rather than drop a Meet recording's event.
		return false, fmt.Errorf("ownership of room %s: %w", name, storeErr)
	}
	return false, nil
}

// NotMeet reports whether ev shows by itself that it is no Meet room's
// event: it carries its room, and the room's metadata is empty or names
// another creator. Handle skips such an event without reading anything.
// An event that needs a look-up (egress and ingress events name only their
// room) or whose metadata is not valid (Handle logs it) is not reported.
func (h *Handler) NotMeet(ev *event.Event) bool {
	metadata, ok := ev.RoomMetadata()
	if !ok {
		return false
	}
	meet, err := h.meetCreated(metadata)
	return err == nil && !meet
}

func (h *Handler) createdByMeet(metadata string, log *slog.Logger) bool {
	meet, err := h.meetCreated(metadata)
	if err != nil {
		// QUIRK 2 kept in effect: invalid metadata means "not Meet", logged.
		log.Debug("room metadata is not a JSON object with a string createdBy; not a Meet room", "err", err)
	}
	return meet
}

// meetCreated reads a room's metadata as Meet writes it: Meet's rooms carry
// a JSON object whose createdBy is Meet's name; empty metadata is another
// creator's room.
func (h *Handler) meetCreated(metadata string) (bool, error) {
	if metadata == "" {
		return false, nil
	}
	createdBy, err := field[string]([]byte(metadata), "createdBy")
	if err != nil {
		return false, err
	}
	return createdBy == h.opts.NameID, nil
}

// recordingEgress handles egress_started/updated/ended (§5.1). Storage
// writes come first so that a retry after a storage failure never repeats
// a data message.
func (h *Handler) recordingEgress(ctx context.Context, ev *event.Event, eg *livekit.EgressInfo, log *slog.Logger) error {
	if !IsRecordingEgress(eg) {
		log.Debug("egress is not a recording; ignored", "egress", eg.GetEgressId())
		return nil
	}
	info, err := ToRecordingInfo(eg)
	if err != nil {
		log.Warn("recording egress skipped", "err", err)
		return nil
	}
	body, err := marshalJS(info)
	if err != nil {
		return fmt.Errorf("encode recording %s: %w", info.RecordingID, err)
	}
	ev.Meet.Recording = body
	mdKey, err := MetadataKey(info.RecordingID)
	if err != nil {
		log.Warn("recording egress skipped", "err", err)
		return nil
	}
	current, err := h.saveRecording(ctx, h.key(mdKey), info.Status, eg.UpdatedAt, body)
	if err != nil {
		return err
	}
	if ev.Type == "egress_started" {
		// Even when late: the file is written once, whenever it is missing.
		if err := h.saveRoomMetadata(ctx, info.RoomID, log); err != nil {
			return err
		}
	}
	if !current {
		ev.Meet.Stale = true
		log.Info("recording metadata kept: the event is older than the stored state", "recording", info.RecordingID, "status", info.Status)
		return nil
	}
	if topic, payload, err := info.Signal(); err != nil {
		log.Error("recording signal", "err", err)
	} else if err := h.lk.SendData(ctx, info.RoomID, topic, payload, nil); err != nil {
		metrics.LiveKitErrors.WithLabelValues("SendData").Inc()
		log.Warn("sending the recording signal failed", "topic", topic, "err", err)
	}
	switch {
	case ev.Type == "egress_updated" && info.Status == StatusActive:
		if err := h.coord.Publish(ctx, coord.Event{Type: EventRecordingActive, Payload: body}); err != nil {
			log.Warn("publishing recording_active failed", "err", err)
		}
	case ev.Type == "egress_ended":
		h.releaseRecordingLock(ctx, info.RoomID, log)
	}
	return nil
}

// metaUpdatedAt is the user metadata key that keeps the egress updatedAt of
// the stored state, so equal-rank updates are ordered by LiveKit's clock.
const metaUpdatedAt = "egress-updated-at"

// saveRecording writes the recording metadata unless the stored state is
// newer (a final state is never replaced by a non-final one; within a rank
// the later egress updatedAt wins). It uses compare-and-swap so two replicas
// cannot race a stale state over a newer one. It reports whether body is
// now the stored state.
//
// The state this replica last wrote or read is remembered, so that the next
// update of a recording, the common case, is one Put conditional on the
// remembered ETag instead of a Get and a Put. The condition keeps the
// decision exact: the Put only succeeds if the object is still the one
// remembered, and when it fails the real state is read and decided on as
// without the cache. Two cases do not take the shortcut:
//   - a remembered state that makes the event stale: the object may have
//     changed or gone since, so skipping the write is only decided on the
//     real state;
//   - an update of equal rank that changes the body: the ETag covers the
//     body, not the updatedAt kept in the user metadata, so If-Match cannot
//     see that somebody stored the remembered body again with a later
//     updatedAt. With the body unchanged, such a write cannot change the
//     stored body; at worst it reports that state once more and keeps the
//     older updatedAt, as the read-then-write loop below can within its
//     own window. It takes an older event arriving after a newer one that
//     another replica handled, with the same stored body.
func (h *Handler) saveRecording(ctx context.Context, key string, status Status, updatedAt int64, body []byte) (bool, error) {
	meta := map[string]string{metaUpdatedAt: strconv.FormatInt(updatedAt, 10)}
	next := recState{rank: status.rank(), updatedAt: updatedAt, sum: sha256.Sum256(body)}
	gen := h.recordings.generation()
	if cached, ok := h.recordings.get(key); ok && next.replaces(cached) && (next.rank > cached.rank || next.sum == cached.sum) {
		etag, err := h.store.Put(ctx, key, body, store.PutOptions{IfMatch: cached.etag, Meta: meta})
		if err == nil {
			metrics.MeetCache.WithLabelValues("recording", "hit").Inc()
			next.etag = etag
			h.rememberRecording(key, next, gen)
			return true, nil
		}
		// Either somebody wrote since, or the write's outcome is unknown:
		// the remembered ETag can no longer be trusted.
		h.recordings.forget(key)
		if !errors.Is(err, store.ErrPrecondition) {
			metrics.StoreErrors.WithLabelValues("put").Inc()
			return false, fmt.Errorf("write recording metadata %s: %w", key, err)
		}
		gen = h.recordings.generation()
	}
	metrics.MeetCache.WithLabelValues("recording", "miss").Inc()
	for attempt := 0; attempt < 10; attempt++ {
		obj, err := h.store.Get(ctx, key)
		var opts store.PutOptions
		switch {
		case errors.Is(err, store.ErrNotFound):
			opts = store.PutOptions{IfNoneMatch: true, Meta: meta}
		case err != nil:
			metrics.StoreErrors.WithLabelValues("get").Inc()
			return false, fmt.Errorf("read recording metadata %s: %w", key, err)
		default:
			var old struct {
				Status Status `json:"status"`
			}
			if json.Unmarshal(obj.Body, &old) == nil {
				oldAt, _ := strconv.ParseInt(obj.Meta[metaUpdatedAt], 10, 64)
				stored := recState{etag: obj.ETag, rank: old.Status.rank(), updatedAt: oldAt, sum: sha256.Sum256(obj.Body)}
				if !next.replaces(stored) {
					h.rememberRecording(key, stored, gen)
					return false, nil
				}
			}
			opts = store.PutOptions{IfMatch: obj.ETag, Meta: meta}
		}
		etag, err := h.store.Put(ctx, key, body, opts)
		if errors.Is(err, store.ErrPrecondition) {
			continue // somebody wrote in between: decide again on the new state
		}
		if err != nil {
			metrics.StoreErrors.WithLabelValues("put").Inc()
			return false, fmt.Errorf("write recording metadata %s: %w", key, err)
		}
		next.etag = etag
		h.rememberRecording(key, next, gen)
		return true, nil
	}
	return false, fmt.Errorf("write recording metadata %s: still contended after 10 attempts", key)
}

// recState is what saveRecording knows of a stored recording metadata
// object.
type recState struct {
	etag      string
	rank      int   // of the stored status
	updatedAt int64 // the egress updatedAt kept in the user metadata
	sum       [sha256.Size]byte
}

// replaces reports whether s may be written over old: a higher rank, or the
// same rank and an updatedAt that is not older.
func (s recState) replaces(old recState) bool {
	return s.rank > old.rank || (s.rank == old.rank && s.updatedAt >= old.updatedAt)
}

// rememberRecording caches the stored state of the recording under key. A
// final state is dropped instead: the recording is over, so the entry would
// only take room. So is a state without an ETag, which could not make the
// next write conditional.
func (h *Handler) rememberRecording(key string, s recState, gen uint64) {
	if s.rank == rankFinal || s.etag == "" {
		h.recordings.forget(key)
		return
	}
	h.recordings.add(key, s, gen)
}

// Room is the part of a MeetRoom (§9.1) the webhook path reads.
type Room struct {
	ModeratorRoomURL     string
	PublisherRoomURL     string
	MarkedForDeletion    bool
	RecordingPreferences json.RawMessage // preferences.recordingPreferences, verbatim; nil if absent
}

// errBadRoom marks a Meet room record that exists but cannot be read as one;
// retrying cannot help, so callers log it and carry on.
var errBadRoom = errors.New("the Meet room record is not a valid MeetRoom")

// getRoom reads the Meet room record; (nil, nil) if there is none.
func (h *Handler) getRoom(ctx context.Context, roomID string) (*Room, error) {
	obj, err := h.store.Get(ctx, h.key("rooms/"+roomID+"/"+roomID+".json"))
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalidKey) {
		return nil, nil
	}
	if err != nil {
		metrics.StoreErrors.WithLabelValues("get").Inc()
		return nil, fmt.Errorf("read Meet room %s: %w", roomID, err)
	}
	// Keys are matched exactly, as JavaScript reads them (encoding/json
	// alone would also take "MarkedForDeletion").
	var r Room
	var prefs json.RawMessage
	var errs [4]error
	r.ModeratorRoomURL, errs[0] = field[string](obj.Body, "moderatorRoomUrl")
	r.PublisherRoomURL, errs[1] = field[string](obj.Body, "publisherRoomUrl")
	r.MarkedForDeletion, errs[2] = field[bool](obj.Body, "markedForDeletion")
	prefs, errs[3] = field[json.RawMessage](obj.Body, "preferences")
	if err := errors.Join(errs[:]...); err != nil {
		return nil, fmt.Errorf("%w: room %s: %w", errBadRoom, roomID, err)
	}
	if prefs != nil {
		if r.RecordingPreferences, err = field[json.RawMessage](prefs, "recordingPreferences"); err != nil {
			return nil, fmt.Errorf("%w: room %s: %w", errBadRoom, roomID, err)
		}
	}
	return &r, nil
}

// field reads the member name of a JSON object with an exact, case-sensitive
// key match (the last one wins, as in JSON.parse). A missing member or a JSON
// null is the zero value; a document that is not an object, or a member of
// another type, is an error.
func field[T any](doc []byte, name string) (T, error) {
	var zero T
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(doc, &obj); err != nil {
		return zero, err
	}
	raw, ok := obj[name]
	if !ok || string(raw) == "null" {
		return zero, nil
	}
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		return zero, fmt.Errorf("%s: %w", name, err)
	}
	return v, nil
}

// saveRoomMetadata writes recordings/.metadata/<roomId>/room_metadata.json
// once (§5.2). It is create-only, so a replica can never overwrite another's
// (QUIRK 10 fixed).
func (h *Handler) saveRoomMetadata(ctx context.Context, roomID string, log *slog.Logger) error {
	key := h.key("recordings/.metadata/" + roomID + "/room_metadata.json")
	if _, err := h.store.Get(ctx, key); err == nil {
		return nil
	} else if !errors.Is(err, store.ErrNotFound) {
		metrics.StoreErrors.WithLabelValues("get").Inc()
		return fmt.Errorf("read room metadata %s: %w", key, err)
	}
	room, err := h.getRoom(ctx, roomID)
	if err != nil || room == nil {
		// The reference only logs here; a missing or broken record is not
		// worth retrying the event for.
		log.Warn("room metadata not saved: no readable Meet room record", "err", err)
		return nil
	}
	pub, err1 := urlSecret(room.PublisherRoomURL)
	mod, err2 := urlSecret(room.ModeratorRoomURL)
	if err := errors.Join(err1, err2); err != nil {
		log.Warn("room metadata not saved", "err", err)
		return nil
	}
	type prefs struct {
		RecordingPreferences json.RawMessage `json:"recordingPreferences,omitempty"`
	}
	doc := struct {
		PublisherSecret string `json:"publisherSecret"`
		ModeratorSecret string `json:"moderatorSecret"`
		Preferences     prefs  `json:"preferences"`
	}{PublisherSecret: pub, ModeratorSecret: mod}
	doc.Preferences.RecordingPreferences = room.RecordingPreferences
	body, err := marshalJS(doc)
	if err != nil {
		return fmt.Errorf("encode room metadata %s: %w", key, err)
	}
	if _, err := h.store.Put(ctx, key, body, store.PutOptions{IfNoneMatch: true}); err != nil && !errors.Is(err, store.ErrPrecondition) {
		metrics.StoreErrors.WithLabelValues("put").Inc()
		return fmt.Errorf("write room metadata %s: %w", key, err)
	}
	return nil
}

// urlSecret is MeetRoomHelper.extractSecretsFromRoom for one URL (§9.5).
func urlSecret(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return "", fmt.Errorf("invalid room URL %q", raw)
	}
	return u.Query().Get("secret"), nil
}

// activeEgress is getActiveEgress (§12): the room's egresses whose status is
// EGRESS_ACTIVE, of any kind.
func (h *Handler) activeEgress(ctx context.Context, room string) ([]*livekit.EgressInfo, error) {
	all, err := h.lk.ListActiveEgress(ctx, room)
	if err != nil {
		metrics.LiveKitErrors.WithLabelValues("ListEgress").Inc()
		return nil, err
	}
	var active []*livekit.EgressInfo
	for _, e := range all {
		if e.Status == livekit.EgressStatus_EGRESS_ACTIVE {
			active = append(active, e)
		}
	}
	return active, nil
}

// ErrEgressActive is returned by ReleaseRecordingLock while the room still
// has an active egress.
var ErrEgressActive = errors.New("the room still has an active egress")

// ReleaseRecordingLock frees the room's recording lock unless LiveKit still
// reports an active egress in it (§10.2), whichever replica took it. It
// reports whether the lock was held.
func (h *Handler) ReleaseRecordingLock(ctx context.Context, roomID string) (bool, error) {
	active, err := h.activeEgress(ctx, roomID)
	if err != nil {
		return false, fmt.Errorf("cannot list active egress: %w", err)
	}
	if len(active) > 0 {
		return false, fmt.Errorf("%w (%d)", ErrEgressActive, len(active))
	}
	return h.coord.Release(ctx, RecordingLockName(roomID))
}

// releaseRecordingLock is ReleaseRecordingLock on the webhook path, where a
// lock that stays is logged: the orphan-lock collector frees it later.
func (h *Handler) releaseRecordingLock(ctx context.Context, roomID string, log *slog.Logger) {
	released, err := h.ReleaseRecordingLock(ctx, roomID)
	if err != nil {
		log.Info("recording lock kept", "reason", err)
		return
	}
	log.Debug("recording lock released", "held", released)
}

// lockCollectorMinAge spares locks younger than this: a recording that is
// just starting has no egress yet (§10.5).
const lockCollectorMinAge = time.Minute

// CollectOrphanLocks releases recording locks whose room has no recording
// in progress (§10.5). It runs on the leader replica only. An error on one
// room stops the pass, as in the reference; the next pass tries again.
func (h *Handler) CollectOrphanLocks(ctx context.Context, log *slog.Logger) error {
	locks, err := h.coord.Locks(ctx, RecordingLockName(""))
	if err != nil {
		return fmt.Errorf("list recording locks: %w", err)
	}
	now := h.opts.Now()
	for _, l := range locks {
		roomID := strings.TrimPrefix(l.Name, RecordingLockName(""))
		if now.Sub(l.AcquiredAt) < lockCollectorMinAge {
			continue
		}
		room, err := h.lk.GetRoom(ctx, roomID)
		if err != nil {
			metrics.LiveKitErrors.WithLabelValues("ListRooms").Inc()
			return fmt.Errorf("orphan lock of room %s: %w", roomID, err)
		}
		if room != nil {
			log.Debug("orphan lock check: room exists", "room", roomID, "publishers", room.NumPublishers)
		}
		all, err := h.lk.ListActiveEgress(ctx, roomID)
		if err != nil {
			metrics.LiveKitErrors.WithLabelValues("ListEgress").Inc()
			return fmt.Errorf("orphan lock of room %s: %w", roomID, err)
		}
		recording := false
		for _, e := range all {
			switch e.Status {
			case livekit.EgressStatus_EGRESS_STARTING, livekit.EgressStatus_EGRESS_ACTIVE, livekit.EgressStatus_EGRESS_ENDING:
				recording = recording || IsRecordingEgress(e)
			}
		}
		if recording {
			continue
		}
		if _, err := h.coord.Release(ctx, l.Name); err != nil {
			return fmt.Errorf("release orphan lock of room %s: %w", roomID, err)
		}
		log.Info("orphan recording lock released", "room", roomID, "age", now.Sub(l.AcquiredAt).Round(time.Second))
	}
	return nil
}

// participantJoined tells a newly joined participant that the room is
// being recorded (§5.3, §9.2).
func (h *Handler) participantJoined(ctx context.Context, room *livekit.Room, p *livekit.ParticipantInfo, log *slog.Logger) {
	if p == nil || isEgressParticipant(p) {
		return
	}
	active, err := h.activeEgress(ctx, room.Name)
	if err != nil {
		log.Warn("room status not sent: cannot list active egress", "err", err)
		return
	}
	if len(active) == 0 {
		return
	}
	if err := h.lk.SendData(ctx, room.Name, "roomStatus", []byte(`{"isRecordingStarted":true}`), []string{p.Identity}); err != nil {
		metrics.LiveKitErrors.WithLabelValues("SendData").Inc()
		log.Warn("sending room status failed", "participant", p.Sid, "err", err)
	}
}

// roomFinished releases the recording lock and, if the Meet room was marked
// for deletion, deletes it — awaited and retried (QUIRK 4 fixed) — then
// emits roomFinished for the plugins (QUIRK 3: the reference never did).
func (h *Handler) roomFinished(ctx context.Context, ev *event.Event, name string, log *slog.Logger) ([]*event.Event, error) {
	room, err := h.getRoom(ctx, name)
	if errors.Is(err, errBadRoom) {
		log.Error("room finished; its Meet room record is unreadable, so it is not deleted", "err", err)
		room, err = nil, nil
	}
	if err != nil {
		return nil, err
	}
	h.releaseRecordingLock(ctx, name, log)
	view := &event.Meet{Owned: true, RoomID: name}
	if room == nil {
		log.Info("room finished; no Meet room record")
	} else if room.MarkedForDeletion {
		log.Info("deleting room after meeting finished because it was marked for deletion")
		if err := h.deleteRoom(ctx, name, log); err != nil {
			return nil, err
		}
		view.Deleted = true
	}
	return []*event.Event{ev.Derive(event.TypeRoomFinished, view)}, nil
}

// deleteRoom is bulkDeleteRooms([id], force=true) (§9.4): the room record
// and the LiveKit room. Store failures are returned for a later retry of
// the event; LiveKit is retried here a few times, then logged.
func (h *Handler) deleteRoom(ctx context.Context, roomID string, log *slog.Logger) error {
	err := h.store.Delete(ctx, h.key("rooms/"+roomID+"/"+roomID+".json"))
	// Forgotten even on an error, which may hide a deletion that happened;
	// and after the delete, so that no ownership read from before it is
	// cached (cache.add refuses it).
	h.rooms.forget(roomID)
	if err != nil {
		metrics.StoreErrors.WithLabelValues("delete").Inc()
		return fmt.Errorf("delete Meet room %s: %w", roomID, err)
	}
	wait := h.opts.DeleteBackoff
	for attempt := 1; ; attempt++ {
		err := h.lk.DeleteRoom(ctx, roomID)
		if err == nil {
			return nil
		}
		metrics.LiveKitErrors.WithLabelValues("DeleteRoom").Inc()
		if attempt == h.opts.DeleteAttempts {
			log.Error("LiveKit room not deleted", "attempts", attempt, "err", err)
			return nil
		}
		log.Warn("LiveKit room deletion failed; retrying", "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
			wait *= 2
		}
	}
}

// recorderField is ParticipantPermission.recorder, looked up by name: LiveKit
// deprecated it for ParticipantInfo.kind but still sends it, and OpenVidu
// Meet decides on it alone (kind is not read). Reading it through the
// descriptor keeps Meet's behaviour without the deprecated accessor, and a
// protocol release without the field then treats no one as the recorder
// instead of failing to build.
var recorderField = (&livekit.ParticipantPermission{}).ProtoReflect().Descriptor().Fields().ByName("recorder")

// isEgressParticipant is Meet's isEgressParticipant: an EG_ identity with
// the recorder permission.
func isEgressParticipant(p *livekit.ParticipantInfo) bool {
	perm := p.GetPermission()
	return strings.HasPrefix(p.Identity, "EG_") && perm != nil && recorderField != nil && perm.ProtoReflect().Get(recorderField).Bool()
}
