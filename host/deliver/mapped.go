package deliver

import (
	"fmt"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// ReleaseMapped drops the outbox file's pages from the process's resident
// set. bbolt reads through a shared read-only mapping of the whole file,
// so every page a backlog's records and the plugin stage's tasks were read
// from stays counted in lkedge's RSS until the file next grows and is
// mapped again: tens of MiB after a burst. The pages stay in the kernel's
// page cache, which reclaims clean ones under pressure; the next read of
// one maps it again for the cost of a minor fault.
func (o *Outbox) ReleaseMapped() error {
	// A read transaction holds bbolt's mapping lock: the file cannot be
	// mapped again elsewhere while its old range is advised.
	return o.db.View(func(tx *bolt.Tx) error { return releaseMapped(tx) })
}

func releaseMapped(tx *bolt.Tx) error {
	info := tx.DB().Info()
	size := uintptr(tx.Size()) // the file's used pages, all within the mapping
	if info.Data == 0 || size == 0 {
		return nil
	}
	// By address rather than as a slice: the mapping is bbolt's, and
	// madvise only needs the range.
	if _, _, errno := unix.Syscall(unix.SYS_MADVISE, info.Data, size, unix.MADV_DONTNEED); errno != 0 {
		return fmt.Errorf("outbox: release mapped pages of %s: %w", tx.DB().Path(), errno)
	}
	return nil
}
