package main

import (
	"runtime/debug"
	"testing"
)

func TestTuneGC(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want int
	}{
		{"no GOGC: lkedge's", nil, gcPercent},
		{"GOGC set: left alone", map[string]string{"GOGC": "200"}, 77},
		{"GOGC=off: left alone", map[string]string{"GOGC": "off"}, 77},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// 77 stands for whatever the runtime read from GOGC.
			old := debug.SetGCPercent(77)
			defer debug.SetGCPercent(old)
			tuneGC(func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok })
			if got := debug.SetGCPercent(old); got != tc.want {
				t.Errorf("GC percent %d, want %d", got, tc.want)
			}
		})
	}
}
