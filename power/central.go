package power

import "time"

// US Central time by rule, without a time-zone database: standard time is UTC−6,
// daylight time UTC−5 from 02:00 on the second Sunday of March to 02:00 on the first
// Sunday of November (the rule in force since 2007; earlier dates are not supported).
var (
	centralStandard = time.FixedZone("CST", -6*3600)
	centralDaylight = time.FixedZone("CDT", -5*3600)
)

// dstBounds returns the UTC instants at which daylight time starts and ends in year y.
func dstBounds(y int) (start, end time.Time) {
	start = nthSunday(y, time.March, 2).Add(2*time.Hour + 6*time.Hour)  // 02:00 CST
	end = nthSunday(y, time.November, 1).Add(2*time.Hour + 5*time.Hour) // 02:00 CDT
	return start, end
}

func nthSunday(y int, m time.Month, n int) time.Time {
	d := time.Date(y, m, 1, 0, 0, 0, 0, time.UTC)
	off := (7 - int(d.Weekday())) % 7
	return d.AddDate(0, 0, off+7*(n-1))
}

// InCentral returns t in US Central time (CST or CDT).
func InCentral(t time.Time) time.Time {
	start, end := dstBounds(t.UTC().Year())
	if !t.Before(start) && t.Before(end) {
		return t.In(centralDaylight)
	}
	return t.In(centralStandard)
}

// CentralToUTC converts a Central wall-clock time (given as a UTC-labelled date and
// clock) to an instant. repeated selects the second (standard-time) occurrence of the
// hour that repeats in November. It reports false for a wall time that does not exist
// (the skipped hour in March) and for repeated on an hour that does not repeat.
func CentralToUTC(wall time.Time, repeated bool) (time.Time, bool) {
	y, mo, d := wall.Date()
	h, mi, s := wall.Clock()
	asCDT := time.Date(y, mo, d, h, mi, s, 0, centralDaylight)
	asCST := time.Date(y, mo, d, h, mi, s, 0, centralStandard)
	cdtOK := InCentral(asCDT).Location() == centralDaylight
	cstOK := InCentral(asCST).Location() == centralStandard
	switch {
	case cdtOK && cstOK: // the repeated hour
		if repeated {
			return asCST.UTC(), true
		}
		return asCDT.UTC(), true
	case repeated:
		return time.Time{}, false
	case cdtOK:
		return asCDT.UTC(), true
	case cstOK:
		return asCST.UTC(), true
	}
	return time.Time{}, false
}
