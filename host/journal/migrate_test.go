package journal

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestImportBolt: the pending and failed records of a journal an earlier
// lkedge kept in bbolt reach the log journal, once.
func TestImportBolt(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	old := filepath.Join(dir, "journal.db")
	received := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	db, err := bolt.Open(old, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	put := func(bucket string, seq byte, v []byte) {
		if err := db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists([]byte(bucket))
			if err != nil {
				return err
			}
			return b.Put([]byte{0, 0, 0, 0, 0, 0, 0, seq}, v)
		}); err != nil {
			t.Fatal(err)
		}
	}
	p1, _ := encodeRecord(received.UnixMilli(), "EV_p1", []byte("one"))
	p2, _ := encodeRecord(received.UnixMilli(), "EV_p2", []byte("two"))
	f1, _ := encodeRecord(received.UnixMilli(), "EV_f1", []byte("bad"))
	put("pending", 1, p1)
	put("pending", 2, p2)
	put("failed", 3, encodeFailed(received.UnixMilli(), "gave up", f1))
	put("seen", 1, []byte("ignored"))
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	j := openT(t, filepath.Join(dir, "journal"), Options{})
	n, err := ImportBolt(ctx, j, old)
	if err != nil || n != 3 {
		t.Fatalf("ImportBolt = %d, %v; want 3", n, err)
	}
	recs, err := j.Pending()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range recs {
		got = append(got, r.ID+"="+string(r.Body))
		if !r.ReceivedAt.Equal(received) {
			t.Errorf("%s received at %v, want %v", r.ID, r.ReceivedAt, received)
		}
	}
	if !slices.Equal(got, []string{"EV_p1=one", "EV_p2=two"}) {
		t.Errorf("pending = %v", got)
	}
	failed, err := j.Failed()
	if err != nil || len(failed) != 1 || failed[0].ID != "EV_f1" || failed[0].Reason != "gave up" {
		t.Errorf("failed = %+v, %v", failed, err)
	}
	if _, err := os.Stat(old); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("old journal still at %s: %v", old, err)
	}
	if _, err := os.Stat(old + ".imported"); err != nil {
		t.Errorf("old journal not kept as .imported: %v", err)
	}
	if n, err := ImportBolt(ctx, j, old); err != nil || n != 0 {
		t.Errorf("second ImportBolt = %d, %v; want nothing to do", n, err)
	}
}
