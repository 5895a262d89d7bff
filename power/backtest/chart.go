package backtest

import (
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/hashgrid/hashgrid/power"
)

// chart geometry
const (
	chartWidth   = 1200
	panelHeight  = 220
	chartMargin  = 60
	chartColumns = chartWidth - 2*chartMargin
)

// priceScale maps a price to a signed logarithmic axis, so negative prices, the
// ordinary $20–50 and the $9,000 cap all show.
func priceScale(p float64) float64 { return math.Copysign(math.Log10(1+math.Abs(p)), p) }

// WriteSVG draws the price (min and max per column, signed log scale) and the site load
// of a strategy's run (mean per column) over time, as a standalone SVG.
func WriteSVG(w io.Writer, sc *power.Scenario, loadMW []float64, title string) error {
	n := len(sc.Intervals)
	if n == 0 || len(loadMW) != n {
		return fmt.Errorf("chart: %d intervals, %d loads", n, len(loadMW))
	}
	cols := min(chartColumns, n)
	lo, hi := make([]float64, cols), make([]float64, cols)
	load := make([]float64, cols)
	cnt := make([]int, cols)
	for i := range cols {
		lo[i], hi[i] = math.Inf(1), math.Inf(-1)
	}
	maxLoad := 0.0
	for t, iv := range sc.Intervals {
		c := t * cols / n
		p := iv.Price.Dollars()
		lo[c], hi[c] = math.Min(lo[c], p), math.Max(hi[c], p)
		load[c] += loadMW[t]
		cnt[c]++
		maxLoad = math.Max(maxLoad, loadMW[t])
	}
	if maxLoad == 0 {
		maxLoad = 1
	}
	pMin, pMax := priceScale(-100), priceScale(10000)
	y := func(top int, v, vmin, vmax float64) float64 {
		return float64(top) + float64(panelHeight)*(1-(v-vmin)/(vmax-vmin))
	}
	x := func(c int) float64 { return float64(chartMargin) + float64(c)*float64(chartColumns)/float64(cols) }
	var b strings.Builder
	h := 2*panelHeight + 3*chartMargin
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">`+"\n", chartWidth, h)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/><text x="%d" y="20" font-size="14">%s</text>`+"\n", chartMargin, escape(title))
	top1, top2 := chartMargin, 2*chartMargin+panelHeight
	// price panel
	fmt.Fprintf(&b, `<text x="%d" y="%d">price $/MWh (signed log scale, min–max)</text>`+"\n", chartMargin, top1-6)
	for _, tick := range []float64{-10, 0, 10, 100, 1000, 9000} {
		yy := y(top1, priceScale(tick), pMin, pMax)
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/><text x="4" y="%.1f">%g</text>`+"\n", chartMargin, chartWidth-chartMargin, yy, yy, yy+4, tick)
	}
	b.WriteString(`<path fill="none" stroke="#c0392b" stroke-width="1" d="`)
	for c := range cols {
		if cnt[c] == 0 {
			continue
		}
		fmt.Fprintf(&b, "M%.1f %.1fV%.1f", x(c), y(top1, priceScale(lo[c]), pMin, pMax), y(top1, priceScale(hi[c]), pMin, pMax)-0.5)
	}
	b.WriteString("\"/>\n")
	// load panel
	fmt.Fprintf(&b, `<text x="%d" y="%d">site load MW (mean per column; max %.2f)</text>`+"\n", chartMargin, top2-6, maxLoad)
	for _, f := range []float64{0, 0.5, 1} {
		yy := y(top2, f*maxLoad, 0, maxLoad)
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/><text x="4" y="%.1f">%.1f</text>`+"\n", chartMargin, chartWidth-chartMargin, yy, yy, yy+4, f*maxLoad)
	}
	b.WriteString(`<path fill="none" stroke="#2c3e50" stroke-width="1" d="`)
	first := true
	for c := range cols {
		if cnt[c] == 0 {
			continue
		}
		cmd := "L"
		if first {
			cmd, first = "M", false
		}
		fmt.Fprintf(&b, "%s%.1f %.1f", cmd, x(c), y(top2, load[c]/float64(cnt[c]), 0, maxLoad))
	}
	b.WriteString("\"/>\n")
	// time axis
	for c := 0; c < cols; c += cols / 6 {
		t := sc.Intervals[c*n/cols].Start
		fmt.Fprintf(&b, `<text x="%.1f" y="%d">%s</text>`+"\n", x(c), top2+panelHeight+16, power.InCentral(t).Format("2006-01-02"))
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`+"\n", chartMargin, h-8, "time: US Central")
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func escape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
