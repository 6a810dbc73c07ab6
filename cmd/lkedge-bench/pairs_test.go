package main

import (
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	for _, tt := range []struct {
		in   []float64
		want float64
	}{
		{[]float64{1.4}, 1.4},
		{[]float64{2.0, 1.0, 3.0}, 2.0},
		{[]float64{1.5, 1.1, 1.3, 1.9}, 1.4},
		{[]float64{1.2, 1.2}, 1.2},
	} {
		if got := median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
	if got := median([]time.Duration{80 * time.Microsecond, 70 * time.Microsecond}); got != 75*time.Microsecond {
		t.Errorf("median of 80 and 70 µs = %v, want 75µs", got)
	}
}
