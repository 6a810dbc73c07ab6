package main

import (
	"fmt"
	"slices"
	"time"
)

// pairs measures target 3 (non-Meet events per core against the baseline)
// so that the machine's drift cannot decide it: both servers run at once,
// on the same CPU, and closed loops of d alternate between them n times,
// the first of each pair swapped every time. Each loop's CPU per event is
// the server's own, and a pair's ratio of the two is lkedge's events per
// core over the baseline's; the median of the pairs' ratios is the result.
func pairs(base, lk *server, n, conns int, d time.Duration, maxRate int) error {
	fmt.Printf("pairs: %d alternating closed loops of %s, %d connections, both servers on CPU 0\n\n", n, d, conns)
	fmt.Println("| pair | baseline CPU/event | lkedge CPU/event | lkedge's events per core over the baseline's |")
	fmt.Println("|---|---|---|---|")
	var took [2][]time.Duration
	var ratios []float64
	for i := range n {
		order := []*server{base, lk}
		if i%2 == 1 {
			order = []*server{lk, base}
		}
		for _, s := range order {
			reqs, err := mix(int(float64(maxRate) * d.Seconds()))
			if err != nil {
				return err
			}
			s.drain()
			r, err := closedLoop(s, reqs, conns, d)
			if err != nil {
				return fmt.Errorf("pair %d, %s: %w", i+1, s.name, err)
			}
			k := 0
			if s == lk {
				k = 1
			}
			took[k] = append(took[k], r.cpuPerEvent)
		}
		ratios = append(ratios, float64(took[0][i])/float64(took[1][i]))
		fmt.Printf("| %d | %s | %s | %.2fx |\n", i+1, round(took[0][i]), round(took[1][i]), ratios[i])
	}
	fmt.Printf("| median | %s | %s | %.2fx |\n", round(median(took[0])), round(median(took[1])), median(ratios))
	return nil
}

// median is the middle value, or the mean of the two middle ones.
func median[T time.Duration | float64](xs []T) T {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return s[len(s)/2]
}
