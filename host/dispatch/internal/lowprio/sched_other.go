//go:build !linux

package lowprio

import "errors"

var errUnsupported = errors.New("lowprio: the idle scheduling class exists on Linux only")

func lower() error { return errUnsupported }

func idleClass() (bool, error) { return false, errUnsupported }
