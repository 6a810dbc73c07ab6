package journal

import (
	"context"
	"errors"
	"fmt"
	"os"

	bolt "go.etcd.io/bbolt"
)

// ImportBolt moves the records of a journal that an earlier lkedge kept in a
// bbolt file at path into j, so an upgrade loses nothing: pending records
// are appended again (same id, time and body; new seqs) and failed ones are
// appended and failed again with their reason. The file is then renamed to
// path + ".imported". A crash halfway imports again at the next start, and
// the dedup window turns the records already moved into duplicates. A
// missing file is not an error: there is nothing to import.
func ImportBolt(ctx context.Context, j *Journal, path string) (imported int, err error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: openTimeout, ReadOnly: true})
	if err != nil {
		return 0, fmt.Errorf("journal: import %s: %w", path, err)
	}
	type old struct {
		rec    Record
		failed bool
		reason string
	}
	var recs []old
	var errs []error
	err = db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket([]byte("pending")); b != nil {
			_ = b.ForEach(func(k, v []byte) error {
				rec, err := decodeRecord(0, v)
				if err != nil {
					errs = append(errs, fmt.Errorf("pending record %x: %w", k, err))
					return nil
				}
				recs = append(recs, old{rec: rec})
				return nil
			})
		}
		if b := tx.Bucket([]byte("failed")); b != nil {
			_ = b.ForEach(func(k, v []byte) error {
				f, err := decodeFailed(0, v)
				if err != nil {
					errs = append(errs, fmt.Errorf("failed record %x: %w", k, err))
					return nil
				}
				recs = append(recs, old{rec: f.Record, failed: true, reason: f.Reason})
				return nil
			})
		}
		return nil
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, fmt.Errorf("journal: import %s: %w", path, err)
	}
	for _, o := range recs {
		rec, dup, err := j.Append(ctx, o.rec.ID, o.rec.ReceivedAt, o.rec.Body)
		if err != nil {
			return imported, fmt.Errorf("journal: import %s: %w", path, err)
		}
		if dup {
			continue
		}
		if o.failed {
			if err := j.Fail(ctx, rec.Seq, o.reason); err != nil {
				return imported, fmt.Errorf("journal: import %s: %w", path, err)
			}
		}
		imported++
	}
	if len(errs) > 0 {
		// Keep the file: what could not be read is still in it for an operator.
		return imported, fmt.Errorf("journal: import %s: %d records unreadable, file kept: %w", path, len(errs), errors.Join(errs...))
	}
	if err := os.Rename(path, path+".imported"); err != nil {
		return imported, fmt.Errorf("journal: import %s: %w", path, err)
	}
	return imported, nil
}
