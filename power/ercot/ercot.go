// Package ercot reads ERCOT real-time settlement point prices: files in the wide
// layout (one row per 15-minute interval, a column per load zone, local Central time)
// and in ERCOT's own published layout (a row per settlement point per interval, hour
// ending, a repeated-hour flag, quoted thousands), and live feeds that poll a URL for
// either layout or for JSON, or replay a file at any speed.
//
// Times become UTC instants: the repeated 01:00 hour of November is told apart by its
// order (wide) or its flag (published layout), the skipped hour of March must be
// absent. A file is refused, with its line and the reason, when a row is malformed,
// an interval repeats or is missing, or the zone is not in it. It does not download
// ERCOT's reports itself.
package ercot

import (
	"compress/gzip"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashgrid/hashgrid/power"
)

// Limits on what a price file may hold.
const (
	MaxFileBytes = 64 << 20
	MaxIntervals = 10 * 366 * 96 // ten years
)

// Layout names a file layout.
type Layout int

const (
	Wide      Layout = iota + 1 // time,LZ_AEN,...
	Published                   // Delivery Date,Delivery Hour,...
)

var publishedHeader = []string{"Delivery Date", "Delivery Hour", "Delivery Interval", "Repeated Hour Flag", "Settlement Point Name", "Settlement Point Type", "Settlement Point Price"}

// ReadFile reads the prices of zone from a file in either layout, gzip-compressed if
// its name ends in ".gz" (MaxFileBytes then bounds the uncompressed text).
func ReadFile(path string, zone power.Zone) ([]power.Interval, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("ercot: %w", err)
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(path, ".gz") {
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("%s: ercot: %w", path, err)
		}
		defer zr.Close()
		r = zr
	}
	ivs, err := Read(io.LimitReader(r, MaxFileBytes), zone)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ivs, nil
}

// Read reads the prices of zone, detecting the layout from the header. The result is
// in time order, one interval every 15 minutes without a gap.
func Read(r io.Reader, zone power.Zone) ([]power.Interval, error) {
	cr := csv.NewReader(r)
	cr.ReuseRecord = true
	cr.FieldsPerRecord = -1
	head, err := cr.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("ercot: line 1: empty file")
		}
		return nil, fmt.Errorf("ercot: line 1: %w", err)
	}
	head = append([]string(nil), head...)
	if len(head) > 0 {
		head[0] = strings.TrimPrefix(head[0], "\ufeff")
	}
	switch {
	case len(head) > 1 && strings.EqualFold(strings.TrimSpace(head[0]), "time"):
		return readWide(cr, head, zone)
	case equalHeader(head, publishedHeader):
		return readPublished(cr, zone)
	}
	return nil, fmt.Errorf("ercot: line 1: unknown header %q: want time,<zones...> or %s", strings.Join(head, ","), strings.Join(publishedHeader, ","))
}

func equalHeader(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !strings.EqualFold(strings.TrimSpace(a[i]), b[i]) {
			return false
		}
	}
	return true
}

func line(cr *csv.Reader) int {
	l, _ := cr.FieldPos(0)
	return l
}

func readWide(cr *csv.Reader, head []string, zone power.Zone) ([]power.Interval, error) {
	if zone.EnergyWeighted {
		return nil, fmt.Errorf("ercot: line 1: the wide layout has no energy-weighted (LZEW) prices for %s", zone)
	}
	col := -1
	for i, h := range head {
		if strings.TrimSpace(h) == zone.Name {
			col = i
		}
	}
	if col < 1 {
		return nil, fmt.Errorf("ercot: line 1: zone %s not among columns %s", zone.Name, strings.Join(head[1:], ","))
	}
	var out []power.Interval
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("ercot: %w", err)
		}
		ln := line(cr)
		if len(rec) != len(head) {
			return nil, fmt.Errorf("ercot: line %d: %d fields, want %d", ln, len(rec), len(head))
		}
		wall, err := time.Parse("2006-01-02 15:04:05", strings.TrimSpace(rec[0]))
		if err != nil {
			return nil, fmt.Errorf("ercot: line %d: time %q: want YYYY-MM-DD HH:MM:SS", ln, rec[0])
		}
		if wall.Minute()%15 != 0 || wall.Second() != 0 {
			return nil, fmt.Errorf("ercot: line %d: time %q is not a 15-minute interval start", ln, rec[0])
		}
		start, ok := power.CentralToUTC(wall, false)
		if ok && len(out) > 0 && !start.After(out[len(out)-1].Start) {
			// The second pass through November's repeated hour is standard time.
			start, ok = power.CentralToUTC(wall, true)
		}
		if !ok {
			return nil, fmt.Errorf("ercot: line %d: %s does not exist in US Central time (or repeats out of place)", ln, rec[0])
		}
		// Every column must parse, not only ours: a malformed file is refused whole.
		var price power.Price
		for i := 1; i < len(rec); i++ {
			p, err := power.ParsePrice(rec[i])
			if err != nil {
				return nil, fmt.Errorf("ercot: line %d: column %s: %w", ln, head[i], err)
			}
			if i == col {
				price = p
			}
		}
		if err := appendNext(&out, power.Interval{Start: start, Price: price}); err != nil {
			return nil, fmt.Errorf("ercot: line %d: %w", ln, err)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("ercot: no intervals")
	}
	return out, nil
}

// central formats t in US Central time, the time of the price files, so that an error
// names an interval as the file writes it (with CST or CDT to tell November's
// repeated hour apart).
func central(t time.Time) string { return power.InCentral(t).Format("2006-01-02 15:04 MST") }

// appendNext appends iv if it follows the last interval by exactly 15 minutes.
func appendNext(out *[]power.Interval, iv power.Interval) error {
	if len(*out) >= MaxIntervals {
		return fmt.Errorf("more than %d intervals", MaxIntervals)
	}
	if n := len(*out); n > 0 {
		want := (*out)[n-1].Start.Add(power.IntervalLength)
		switch {
		case iv.Start.Equal((*out)[n-1].Start):
			return fmt.Errorf("interval %s repeats", central(iv.Start))
		case iv.Start.Before(want):
			return fmt.Errorf("interval %s out of order", central(iv.Start))
		case iv.Start.After(want):
			n, s := iv.Start.Sub(want)/power.IntervalLength, "s"
			if n == 1 {
				s = ""
			}
			return fmt.Errorf("gap: %d interval%s missing from %s to %s (US Central)", n, s, central(want), central(iv.Start))
		}
	}
	*out = append(*out, iv)
	return nil
}

func readPublished(cr *csv.Reader, zone power.Zone) ([]power.Interval, error) {
	type row struct {
		iv   power.Interval
		line int
	}
	var rows []row
	names := map[string]bool{}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("ercot: %w", err)
		}
		ln := line(cr)
		if len(rec) != len(publishedHeader) {
			return nil, fmt.Errorf("ercot: line %d: %d fields, want %d", ln, len(rec), len(publishedHeader))
		}
		day, err := time.Parse("01/02/2006", strings.TrimSpace(rec[0]))
		if err != nil {
			return nil, fmt.Errorf("ercot: line %d: Delivery Date %q: want MM/DD/YYYY", ln, rec[0])
		}
		hour, err := strconv.Atoi(strings.TrimSpace(rec[1]))
		if err != nil || hour < 1 || hour > 24 {
			return nil, fmt.Errorf("ercot: line %d: Delivery Hour %q: want 1..24", ln, rec[1])
		}
		quarter, err := strconv.Atoi(strings.TrimSpace(rec[2]))
		if err != nil || quarter < 1 || quarter > 4 {
			return nil, fmt.Errorf("ercot: line %d: Delivery Interval %q: want 1..4", ln, rec[2])
		}
		var repeated bool
		switch strings.TrimSpace(rec[3]) {
		case "Y":
			repeated = true
		case "N":
		default:
			return nil, fmt.Errorf("ercot: line %d: Repeated Hour Flag %q: want Y or N", ln, rec[3])
		}
		name, typ := strings.TrimSpace(rec[4]), strings.TrimSpace(rec[5])
		if name == "" || typ == "" {
			return nil, fmt.Errorf("ercot: line %d: empty settlement point name or type", ln)
		}
		price, err := power.ParsePrice(rec[6])
		if err != nil {
			return nil, fmt.Errorf("ercot: line %d: Settlement Point Price: %w", ln, err)
		}
		// Hour ending h, interval q: the interval starts (h-1) hours and (q-1) quarters
		// after midnight.
		wall := day.Add(time.Duration(hour-1)*time.Hour + time.Duration(quarter-1)*power.IntervalLength)
		start, ok := power.CentralToUTC(wall, repeated)
		if !ok {
			return nil, fmt.Errorf("ercot: line %d: %s hour ending %d (repeated %v) does not exist in US Central time", ln, rec[0], hour, repeated)
		}
		names[name] = true
		if name != zone.Name || (typ == "LZEW") != zone.EnergyWeighted {
			continue
		}
		if len(rows) >= MaxIntervals {
			return nil, fmt.Errorf("ercot: line %d: more than %d intervals", ln, MaxIntervals)
		}
		rows = append(rows, row{power.Interval{Start: start, Price: price}, ln})
	}
	if len(rows) == 0 {
		if names[zone.Name] {
			return nil, fmt.Errorf("ercot: zone %s has no rows of the wanted type", zone)
		}
		return nil, fmt.Errorf("ercot: zone %s not in file", zone)
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].iv.Start.Before(rows[j].iv.Start) })
	out := make([]power.Interval, 0, len(rows))
	for _, r := range rows {
		if err := appendNext(&out, r.iv); err != nil {
			return nil, fmt.Errorf("ercot: line %d: %w", r.line, err)
		}
	}
	return out, nil
}
