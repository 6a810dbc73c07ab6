package lowprio

import "golang.org/x/sys/unix"

// setNice sets the calling thread's nice value: on Linux, PRIO_PROCESS with
// a thread id names that one thread.
func setNice(nice int) error {
	return unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), nice)
}

// threadNice is the calling thread's nice value (the raw system call
// returns 20 minus it).
func threadNice() (int, error) {
	prio, err := unix.Getpriority(unix.PRIO_PROCESS, unix.Gettid())
	return 20 - prio, err
}
