package service

import (
	"net/http"
	"syscall"
	"testing"
	"time"
)

// TestConsulStopsAnswering: a Consul agent that still accepts connections
// but answers nothing (stopped with SIGSTOP: a hung agent, or a partition
// that drops packets) does not hold a webhook. The real binary refuses it
// with 503 and Retry-After once the admission's bound (3 s) has passed, as
// LiveKit's sender needs to retry it before its own timeout; the sender's
// retry once Consul answers again is accepted, and every event is handled
// once, in order.
func TestConsulStopsAnswering(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	a := c.replica(t, "a")
	putRooms(t, c.s3, "hush", 1)
	if code := post(t, a.URL, recordingStep("hush", 0, 0)); code != http.StatusOK {
		t.Fatalf("the first webhook: %d, want 200", code)
	}
	eventually(t, 10*time.Second, "the first event handled", func() bool { return len(c.lk.SentData()) == 1 })

	pid := c.consul.PID()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
	client := &http.Client{Timeout: 20 * time.Second} // LiveKit's own is shorter still
	start := time.Now()
	res, err := postWebhook(client, a.URL, recordingStep("hush", 0, 1))
	if err != nil {
		t.Fatalf("a webhook while Consul answers nothing: %v after %v; want a 503 within the admission's bound", err, time.Since(start))
	}
	res.Body.Close()
	took := time.Since(start)
	if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" {
		t.Errorf("a webhook while Consul answers nothing: %d, Retry-After %q; want 503 with Retry-After", res.StatusCode, res.Header.Get("Retry-After"))
	}
	if took > 6*time.Second {
		t.Errorf("answered after %v, want within about the admission's bound of 3 s", took)
	}

	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	for step := 1; step < len(recordingSteps); step++ {
		deadline := time.Now().Add(30 * time.Second)
		for post(t, a.URL, recordingStep("hush", 0, step)) != http.StatusOK {
			if time.Now().After(deadline) {
				t.Fatalf("step %d never accepted after Consul answered again", step)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	c.handledOnce(t, len(recordingSteps), 60*time.Second)
	checkRecordings(t, c.s3, "hush", 1)
}
