package lowprio

import "golang.org/x/sys/unix"

// lower moves the calling thread to the idle scheduling class (pid 0 names
// the calling thread).
func lower() error {
	attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_IDLE}
	return unix.SchedSetAttr(0, &attr, 0)
}

// idleClass reports whether the calling thread is in the idle class.
func idleClass() (bool, error) {
	attr, err := unix.SchedGetAttr(0, 0)
	if err != nil {
		return false, err
	}
	return attr.Policy == unix.SCHED_IDLE, nil
}
