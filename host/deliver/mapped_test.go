package deliver

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// TestReleaseMapped: the pages a read brought into the outbox file's
// mapping leave the process's resident set, and the data reads back the
// same afterwards.
func TestReleaseMapped(t *testing.T) {
	o := openOutbox(t, testOptions())
	bucket := []byte("test-release-mapped")
	value := bytes.Repeat([]byte{'x'}, 4<<10)
	if err := o.DB().Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket(bucket)
		if err != nil {
			return err
		}
		for i := range 4096 { // 16 MiB
			if err := b.Put([]byte(fmt.Sprintf("%08d", i)), value); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	readAll := func() int {
		n := 0
		if err := o.DB().View(func(tx *bolt.Tx) error {
			return tx.Bucket(bucket).ForEach(func(_, v []byte) error {
				if !bytes.Equal(v, value) {
					return fmt.Errorf("value of %d bytes read back changed", len(v))
				}
				n++
				return nil
			})
		}); err != nil {
			t.Fatal(err)
		}
		return n
	}
	readAll()
	before := mappedKB(t, o.path)
	if before < 8<<10 {
		t.Fatalf("reading 16 MiB left only %d kB of the file resident; the test measures nothing", before)
	}
	if err := o.ReleaseMapped(); err != nil {
		t.Fatal(err)
	}
	if after := mappedKB(t, o.path); after > before/8 {
		t.Errorf("resident pages of the outbox file: %d kB before ReleaseMapped, %d kB after", before, after)
	}
	if n := readAll(); n != 4096 {
		t.Errorf("read back %d records after ReleaseMapped, want 4096", n)
	}
}

// mappedKB is how much of the mappings of path is resident, from
// /proc/self/smaps.
func mappedKB(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Skipf("no /proc/self/smaps: %v", err)
	}
	kb, in := 0, false
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":"):
			in = len(f) >= 6 && f[5] == path
		case in && len(f) == 3 && f[0] == "Rss:":
			n, _ := strconv.Atoi(f[1])
			kb += n
		}
	}
	return kb
}
