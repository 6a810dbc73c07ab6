//go:build !linux

package lowprio

import "errors"

var errUnsupported = errors.New("lowprio: thread priority is not supported on this system")

func setNice(int) error { return errUnsupported }

func threadNice() (int, error) { return 0, errUnsupported }
