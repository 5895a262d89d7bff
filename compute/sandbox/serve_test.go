package sandbox

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

func startService(t *testing.T, s Spec) *Service {
	t.Helper()
	sv, err := testRunner(t).Serve(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sv.Kill(); sv.Wait() })
	return sv
}

// TestServe starts the probe once and asks it many times: its state carries from
// request to request, so it is the same process answering; its usage is read from
// /proc while it runs; a kill ends it with StopKilled.
func TestServe(t *testing.T) {
	sv := startService(t, Spec{Module: probeModule(t), Args: []string{"serve"}})
	ctx := context.Background()
	const n = 200
	t0 := time.Now()
	for i := 1; i <= n; i++ {
		resp, err := sv.Do(ctx, []byte("hello "+strconv.Itoa(i)))
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if want := "HELLO " + strconv.Itoa(i); string(resp) != want {
			t.Fatalf("request %d: %q, want %q", i, resp, want)
		}
		if i == 1 {
			t.Logf("first response (module compiled or loaded from the cache, started): %v", time.Since(t0))
			t0 = time.Now()
		}
	}
	t.Logf("%d more requests in %v (%v each)", n-1, time.Since(t0), time.Since(t0)/(n-1))
	resp, err := sv.Do(ctx, []byte("count"))
	if err != nil || string(resp) != strconv.Itoa(n+1) {
		t.Fatalf("count: %q %v, want %d: not one process", resp, err, n+1)
	}
	if resp, err := sv.Do(ctx, nil); err != nil || len(resp) != 0 {
		t.Fatalf("empty request: %q %v", resp, err)
	}
	if _, err := sv.Do(ctx, []byte("spin 20")); err != nil {
		t.Fatal(err)
	}
	u, err := sv.Usage()
	if err != nil {
		t.Fatal(err)
	}
	if u.CPU <= 0 || u.RSS == 0 {
		t.Fatalf("live usage %+v: want CPU time and resident memory from /proc", u)
	}
	t.Logf("live usage: %v CPU, %d MiB resident", u.CPU, u.RSS>>20)
	sv.Kill()
	res, err := sv.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if !res.Stopped(StopKilled) {
		t.Fatalf("after Kill: %+v", res)
	}
	if _, err := sv.Do(ctx, []byte("x")); !errors.Is(err, ErrBroken) {
		t.Fatalf("request to a killed service: %v, want ErrBroken", err)
	}
}

// TestServeEnds covers a service that ends by itself: a trap, an exit, a response
// over the limit, and a request abandoned by its context.
func TestServeEnds(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		req  string
		want func(Result) bool
	}{
		// A Go module's panic exits with code 2, its trace on stderr.
		{"crash", func(r Result) bool {
			return r.Err == "" && r.ExitCode == 2 && strings.Contains(string(r.Stderr), "panic")
		}},
		{"exit", func(r Result) bool { return r.Err == "" && r.ExitCode == 3 }},
		{"big 5000", func(r Result) bool { return r.Stopped(StopKilled) }},
	} {
		sv := startService(t, Spec{Module: probeModule(t), Args: []string{"serve"}, MaxOutput: 4096})
		if resp, err := sv.Do(ctx, []byte("big 4096")); err != nil || len(resp) != 4096 {
			t.Fatalf("%s: a response at the limit: %d bytes, %v", tc.req, len(resp), err)
		}
		_, err := sv.Do(ctx, []byte(tc.req))
		if !errors.Is(err, ErrBroken) {
			t.Fatalf("%s: %v, want ErrBroken", tc.req, err)
		}
		res, werr := sv.Wait()
		if werr != nil || !tc.want(res) {
			t.Fatalf("%s: ended with err %q exit %d (stderr %q) %v", tc.req, res.Err, res.ExitCode, res.Stderr, werr)
		}
		t.Logf("%s: %v; ended: err %q exit %d, stderr tail %q", tc.req, err, res.Err, res.ExitCode, lastLine(res.Stderr))
	}

	sv := startService(t, Spec{Module: probeModule(t), Args: []string{"serve"}})
	rctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	if _, err := sv.Do(rctx, []byte("hang")); !errors.Is(err, ErrBroken) {
		t.Fatalf("hang: %v, want ErrBroken", err)
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Fatalf("an abandoned request took %v to return", d)
	}
	if res, _ := sv.Wait(); !res.Stopped(StopKilled) {
		t.Fatalf("after an abandoned request: %+v", res)
	}

	// A service that ends with no request under way: Done says so.
	idle := startService(t, Spec{Module: probeModule(t), Args: []string{"exit", "5"}})
	select {
	case <-idle.Done():
	case <-time.After(time.Minute):
		t.Fatal("a service that exited at once is not done")
	}
	if res, err := idle.Wait(); err != nil || res.Err != "" || res.ExitCode != 5 {
		t.Fatalf("idle exit: %+v %v", res, err)
	}

	if _, err := testRunner(t).Serve(ctx, Spec{Module: probeModule(t), Stdin: []byte("x")}); err == nil {
		t.Fatal("a service with standard input was started")
	}
}

func lastLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}
