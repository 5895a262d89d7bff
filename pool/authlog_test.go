package pool

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid/stratum"
)

// TestRefusalLogIsRateLimited checks that refused authorizations are logged, at most
// refusalLogBurst lines a window, and that the next window's first line counts the
// ones left out.
func TestRefusalLogIsRateLimited(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(1_700_000_000, 0)
	p := &Pool{cfg: Config{Now: func() time.Time { return now }}, log: slog.New(slog.NewTextHandler(&buf, nil))}
	c := &stratum.Conn{}
	for range refusalLogBurst + 15 {
		p.refusals.log(p, c, "notanaddress."+strings.Repeat("w", 500), errors.New("invalid address"))
	}
	if n := strings.Count(buf.String(), "authorization refused"); n != refusalLogBurst {
		t.Errorf("%d lines in one window, want %d", n, refusalLogBurst)
	}
	if strings.Contains(buf.String(), strings.Repeat("w", maxLoggedUser)) {
		t.Error("a long user name is logged whole")
	}
	buf.Reset()
	now = now.Add(refusalLogWindow)
	p.refusals.log(p, c, "x", errors.New("invalid address"))
	if !strings.Contains(buf.String(), "not_logged_before=15") {
		t.Errorf("next window's line: %q, want it to count the 15 left out", buf.String())
	}
}
