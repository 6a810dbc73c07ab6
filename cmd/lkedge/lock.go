package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/lkedge/lkedge/host/coord"
	"github.com/lkedge/lkedge/host/livekitapi"
	"github.com/lkedge/lkedge/host/meet"
	"github.com/lkedge/lkedge/host/service"
)

// recordingLockTTL is the reference's RECORDING_LOCK_TTL.
const recordingLockTTL = 6 * time.Hour

// errHeld makes `lock acquire` exit 1 when the room is already recorded,
// OpenVidu Meet's 409.
var errHeld = errors.New("the room is already being recorded (lock held)")

const lockUsage = `usage:
  lkedge lock acquire [--config FILE] [--wait-active D] ROOM
  lkedge lock release [--config FILE] [--force] ROOM
  lkedge lock list [--config FILE]
(lkedge lock COMMAND -h for each command's options)
`

func lock(args []string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New("lock needs a command: acquire, release or list\n\n" + strings.TrimSpace(lockUsage))
	}
	if isHelp(args) {
		return help(out, lockUsage)
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "acquire", "release", "list":
	default:
		return fmt.Errorf("unknown lock command %q (acquire, release, list)", cmd)
	}
	var waitActive time.Duration
	var force bool
	cfg, fs, err := loadConfig("lock "+cmd, args, func(fs *flag.FlagSet) {
		switch cmd {
		case "acquire":
			fs.DurationVar(&waitActive, "wait-active", 0, "after acquiring, wait this long for the recording_active event of the room")
		case "release":
			fs.BoolVar(&force, "force", false, "release even if LiveKit reports an active egress in the room")
		}
	})
	if err != nil {
		return err
	}
	if cfg.Consul == nil {
		return errors.New("lock commands need LKEDGE_COORDINATOR=consul: the in-process coordinator lives inside one lkedge process")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	replica, err := service.ReplicaID(cfg)
	if err != nil {
		return err
	}
	co, err := service.OpenCoordinator(ctx, cfg, replica+"-cli", log)
	if err != nil {
		return err
	}
	defer co.Close()

	room := func() (string, error) {
		if fs.NArg() != 1 {
			return "", fmt.Errorf("lock %s needs exactly one ROOM", cmd)
		}
		return fs.Arg(0), nil
	}
	switch cmd {
	case "acquire":
		id, err := room()
		if err != nil {
			return err
		}
		return acquire(ctx, co, id, waitActive, out)
	case "release":
		id, err := room()
		if err != nil {
			return err
		}
		var held bool
		if force {
			held, err = co.Release(ctx, meet.RecordingLockName(id))
		} else {
			lk := livekitapi.New(cfg.LiveKitURL, cfg.APIKey, cfg.APISecret, 10*time.Second)
			// Releasing reads LiveKit and the coordinator only, never the store.
			held, err = meet.New(nil, co, lk, meet.Options{}).ReleaseRecordingLock(ctx, id)
		}
		if err != nil {
			return fmt.Errorf("lock of room %s kept: %w", id, err)
		}
		if held {
			fmt.Fprintf(out, "released %s\n", meet.RecordingLockName(id))
		} else {
			fmt.Fprintf(out, "%s was not held\n", meet.RecordingLockName(id))
		}
		return nil
	case "list":
		locks, err := co.Locks(ctx, meet.RecordingLockName(""))
		if err != nil {
			return err
		}
		w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "LOCK\tACQUIRED\tEXPIRES")
		for _, l := range locks {
			fmt.Fprintf(w, "%s\t%s\t%s\n", l.Name, l.AcquiredAt.UTC().Format(time.RFC3339), l.ExpiresAt.UTC().Format(time.RFC3339))
		}
		return w.Flush()
	}
	return nil
}

// acquire takes the room's recording lock like Meet's start-recording: it
// subscribes to recording_active first (so an early event is not missed,
// QUIRK 8 fixed), then takes the lock, then optionally waits for the event.
func acquire(ctx context.Context, co coord.Coordinator, room string, wait time.Duration, out io.Writer) error {
	subCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var events <-chan coord.Event
	if wait > 0 {
		var err error
		if events, err = co.Subscribe(subCtx, meet.EventRecordingActive); err != nil {
			return err
		}
	}
	ok, err := co.Acquire(ctx, meet.RecordingLockName(room), recordingLockTTL)
	if err != nil {
		return err
	}
	if !ok {
		return errHeld
	}
	fmt.Fprintf(out, "acquired %s for %s\n", meet.RecordingLockName(room), recordingLockTTL)
	if wait == 0 {
		return nil
	}
	timeout := time.After(wait)
	for {
		select {
		case ev := <-events:
			var info struct {
				RoomID string `json:"roomId"`
			}
			if json.Unmarshal(ev.Payload, &info) == nil && info.RoomID == room {
				fmt.Fprintf(out, "recording active: %s\n", ev.Payload)
				return nil
			}
		case <-timeout:
			return fmt.Errorf("no recording_active event for room %s within %s (the lock stays; release it if the recording did not start)", room, wait)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
