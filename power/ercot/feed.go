package ercot

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"time"

	"github.com/hashgrid/hashgrid/power"
)

// Replay publishes the intervals of a price file as if live, at speed times real time:
// an interval is published when it ends in market time. Market time starts at the
// start of the first interval (or From) when the replay starts.
type Replay struct {
	ivs     []power.Interval
	speed   float64
	wall0   time.Time
	market0 time.Time
}

// NewReplay returns a replay of ivs starting at market time from (the first interval's
// start when zero) at wall-clock time wall0.
func NewReplay(ivs []power.Interval, speed float64, from, wall0 time.Time) (*Replay, error) {
	if len(ivs) == 0 {
		return nil, fmt.Errorf("replay: no intervals")
	}
	if !(speed > 0) {
		return nil, fmt.Errorf("replay: speed must be positive")
	}
	if from.IsZero() {
		from = ivs[0].Start
	}
	return &Replay{ivs: ivs, speed: speed, wall0: wall0, market0: from}, nil
}

// MarketTime maps a wall-clock time to market time.
func (r *Replay) MarketTime(wall time.Time) time.Time {
	return r.market0.Add(time.Duration(float64(wall.Sub(r.wall0)) * r.speed))
}

// Published returns the intervals that have ended by market time now.
func (r *Replay) Published(_ context.Context, now time.Time) ([]power.Interval, error) {
	n := sort.Search(len(r.ivs), func(i int) bool { return r.ivs[i].End().After(now) })
	return r.ivs[:n], nil
}

// Limits of a polled feed.
const (
	MaxFeedBytes = 16 << 20
	FeedTimeout  = 20 * time.Second
)

// Poller fetches a URL serving prices as CSV (either layout) or JSON: an array of
// {"start":"RFC3339","price":12.34} ($/MWh), or {"intervals":[...]} of the same.
type Poller struct {
	URL    string
	Zone   power.Zone
	Client *http.Client
}

// MarketTime is the identity: a polled feed is live.
func (p *Poller) MarketTime(wall time.Time) time.Time { return wall }

// Published fetches the feed and returns the intervals ended by now.
func (p *Poller) Published(ctx context.Context, now time.Time) ([]power.Interval, error) {
	ctx, cancel := context.WithTimeout(ctx, FeedTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL, nil)
	if err != nil {
		return nil, fmt.Errorf("price feed: %w", err)
	}
	cl := p.Client
	if cl == nil {
		cl = http.DefaultClient
	}
	resp, err := cl.Do(req)
	if err != nil {
		return nil, fmt.Errorf("price feed: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("price feed: %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxFeedBytes+1))
	if err != nil {
		return nil, fmt.Errorf("price feed: %w", err)
	}
	if len(body) > MaxFeedBytes {
		return nil, fmt.Errorf("price feed: over %d bytes", MaxFeedBytes)
	}
	ivs, err := ParseFeed(body, p.Zone)
	if err != nil {
		return nil, fmt.Errorf("price feed: %w", err)
	}
	n := sort.Search(len(ivs), func(i int) bool { return ivs[i].End().After(now) })
	return ivs[:n], nil
}

// ParseFeed parses a feed body: JSON when it starts with '[' or '{', CSV otherwise.
func ParseFeed(body []byte, zone power.Zone) ([]power.Interval, error) {
	t := bytes.TrimSpace(body)
	if len(t) == 0 || (t[0] != '[' && t[0] != '{') {
		return Read(bytes.NewReader(body), zone)
	}
	type item struct {
		Start *time.Time `json:"start"`
		Price *float64   `json:"price"`
	}
	var items []item
	if t[0] == '{' {
		var w struct {
			Intervals []item `json:"intervals"`
		}
		if err := json.Unmarshal(t, &w); err != nil {
			return nil, fmt.Errorf("json: %w", err)
		}
		items = w.Intervals
	} else if err := json.Unmarshal(t, &items); err != nil {
		return nil, fmt.Errorf("json: %w", err)
	}
	var out []power.Interval
	for i, it := range items {
		if it.Start == nil || it.Price == nil {
			return nil, fmt.Errorf("json: interval %d: start and price required", i)
		}
		if it.Start.Truncate(power.IntervalLength) != *it.Start {
			return nil, fmt.Errorf("json: interval %d: %s is not a 15-minute boundary", i, it.Start.Format(time.RFC3339))
		}
		pr, err := power.PriceFromFloat(*it.Price)
		if err != nil {
			return nil, fmt.Errorf("json: interval %d: %w", i, err)
		}
		if err := appendNext(&out, power.Interval{Start: it.Start.UTC(), Price: pr}); err != nil {
			return nil, fmt.Errorf("json: interval %d: %w", i, err)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("json: no intervals")
	}
	return out, nil
}
