package journal

import (
	"io"
	"os"
	"syscall"
)

// FS is the file system under the journal: the few operations it uses on
// its data files, so that a test can make one of them fail as a disk would
// (the idea of hashicorp/raft-wal's VFS). The directory lock is taken on
// the real file system whatever FS is.
type FS interface {
	OpenFile(name string, flag int, perm os.FileMode) (File, error)
	ReadDir(name string) ([]os.DirEntry, error)
	Remove(name string) error
	Rename(oldpath, newpath string) error
	// SyncDir makes the directory's entries (created, renamed, removed
	// files) durable.
	SyncDir(name string) error
}

// File is an open journal file.
type File interface {
	io.ReaderAt
	io.WriterAt
	Truncate(size int64) error
	// Datasync makes the written data durable (fdatasync); Sync also the
	// file's metadata (fsync).
	Datasync() error
	Sync() error
	Close() error
}

// OSFS is the operating system's file system, the default.
type OSFS struct{}

// OpenFile opens name as os.OpenFile does.
func (OSFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

// ReadDir lists the directory as os.ReadDir does.
func (OSFS) ReadDir(name string) ([]os.DirEntry, error) { return os.ReadDir(name) }

// Remove removes name.
func (OSFS) Remove(name string) error { return os.Remove(name) }

// Rename renames oldpath to newpath, replacing it.
func (OSFS) Rename(oldpath, newpath string) error { return os.Rename(oldpath, newpath) }

// SyncDir fsyncs the directory.
func (OSFS) SyncDir(name string) error {
	d, err := os.Open(name)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

type osFile struct{ *os.File }

func (f osFile) Datasync() error { return syscall.Fdatasync(int(f.Fd())) }
