package control_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid/power/control"
	"github.com/hashgrid/hashgrid/power/minersim"
)

func startFleet(t *testing.T, n int, boot time.Duration) *minersim.Fleet {
	t.Helper()
	f, err := minersim.Start(minersim.Config{Count: n, Boot: boot, SleepWatts: 12,
		Profiles: []minersim.Profile{{Name: "default", THs: 100, Watts: 3450}, {Name: "eco", THs: 80, Watts: 2240}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestLuxOSCurtailWakeProfile(t *testing.T) {
	f := startFleet(t, 1, 0)
	ctx := context.Background()
	c, err := control.NewClient(f.Addrs()[0], control.LuxOS, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Sleeping || st.HashrateGHs != 100000 || st.Watts != 3450 || st.Profile != "default" {
		t.Fatalf("initial status: got %+v, want awake 100000 GH/s 3450 W default", st)
	}
	if err := c.Curtail(ctx); err != nil {
		t.Fatal(err)
	}
	st, _ = c.Status(ctx)
	if !st.Sleeping || st.HashrateGHs != 0 || st.Watts != 12 {
		t.Fatalf("after curtail: got %+v, want asleep, 0 GH/s, 12 W", st)
	}
	if err := c.SetProfile(ctx, "eco"); err != nil {
		t.Fatal(err)
	}
	if err := c.Wake(ctx); err != nil {
		t.Fatal(err)
	}
	st, _ = c.Status(ctx)
	if st.Sleeping || st.HashrateGHs != 80000 || st.Watts != 2240 || st.Profile != "eco" {
		t.Fatalf("after wake in eco: got %+v", st)
	}
	err = c.SetProfile(ctx, "turbo")
	var ce *control.Error
	if !errors.As(err, &ce) || ce.Status.Code != 14 {
		t.Fatalf("unknown profile: got %v, want a code 14 refusal", err)
	}
}

func TestPrivilegedWithoutSession(t *testing.T) {
	f := startFleet(t, 1, 0)
	c, _ := control.NewClient(f.Addrs()[0], control.LuxOS, time.Second)
	_, err := c.Do(context.Background(), "curtail", "nosuchtoken,sleep")
	var ce *control.Error
	if !errors.As(err, &ce) || ce.Status.Code != control.CodeInvalidSession {
		t.Fatalf("got %v, want invalid session", err)
	}
	if f.States()[0].Asleep {
		t.Fatal("miner slept without a session")
	}
}

func TestCGMinerPauseResume(t *testing.T) {
	f := startFleet(t, 1, 0)
	ctx := context.Background()
	c, _ := control.NewClient(f.Addrs()[0], control.CGMiner, time.Second)
	if err := c.Curtail(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Sleeping || st.Watts != 12 {
		t.Fatalf("after pause: got %+v", st)
	}
	if err := c.SetProfile(ctx, "eco"); !errors.Is(err, control.ErrUnsupported) {
		t.Fatalf("profile on cgminer: got %v, want ErrUnsupported", err)
	}
	if err := c.Wake(ctx); err != nil {
		t.Fatal(err)
	}
	if st, _ := c.Status(ctx); st.Sleeping || st.HashrateGHs != 100000 {
		t.Fatalf("after resume: got %+v", st)
	}
}

func TestBootReportsPowerWithoutHash(t *testing.T) {
	now := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	f, err := minersim.Start(minersim.Config{Count: 1, Boot: time.Minute, Clock: clock, Profiles: []minersim.Profile{{Name: "default", THs: 100, Watts: 3000}}})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx := context.Background()
	c, _ := control.NewClient(f.Addrs()[0], control.LuxOS, time.Second)
	c.Curtail(ctx)
	c.Wake(ctx)
	st, _ := c.Status(ctx)
	if st.HashrateGHs != 0 || st.Watts != 3000 {
		t.Fatalf("booting: got %+v, want 0 GH/s at 3000 W", st)
	}
	now = now.Add(61 * time.Second)
	if st, _ := c.Status(ctx); st.HashrateGHs != 100000 {
		t.Fatalf("booted: got %+v", st)
	}
}

func TestSummaryFormat(t *testing.T) {
	f := startFleet(t, 1, 0)
	c, _ := control.NewClient(f.Addrs()[0], control.CGMiner, time.Second)
	for _, cmd := range []string{"summary", "devs", "pools", "stats", "version", "summary+devs"} {
		secs, err := c.Do(context.Background(), cmd, "")
		if err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
		if len(secs) == 0 {
			t.Fatalf("%s: empty reply", cmd)
		}
	}
	if _, err := c.Do(context.Background(), "nosuch", ""); err == nil {
		t.Fatal("unknown command: got no error")
	}
}

func TestUnreachable(t *testing.T) {
	c, _ := control.NewClient("127.0.0.1:1", control.LuxOS, 200*time.Millisecond)
	if _, err := c.Status(context.Background()); err == nil {
		t.Fatal("got no error from a closed port")
	}
	if _, err := control.NewClient("nohostport", control.LuxOS, 0); err == nil {
		t.Fatal("bad address accepted")
	}
}
