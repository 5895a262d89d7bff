package hashgrid

import (
	"testing"
	"time"
)

func TestRecentWindow(t *testing.T) {
	base := time.Date(2026, 12, 3, 9, 10, 0, 0, time.UTC)
	tests := []struct {
		now      time.Time
		d        time.Duration
		from, to time.Time
	}{
		{base.Add(25 * time.Second), 10 * time.Minute, base.Add(-10 * time.Minute), base.Add(time.Minute)},
		{base, 10 * time.Minute, base.Add(-10 * time.Minute), base.Add(time.Minute)},
		{base.Add(59*time.Second + 999*time.Millisecond), 90 * time.Second, base.Add(-2 * time.Minute), base.Add(time.Minute)},
		{base.Add(time.Second), 0, base.Add(-time.Minute), base.Add(time.Minute)},
	}
	for _, tt := range tests {
		from, to, span := RecentWindow(tt.now, tt.d)
		if !from.Equal(tt.from) || !to.Equal(tt.to) || span != tt.now.Sub(tt.from) {
			t.Errorf("RecentWindow(%s, %s) = %s, %s, %s; want %s, %s, %s", tt.now.Format(time.TimeOnly), tt.d,
				from.Format(time.TimeOnly), to.Format(time.TimeOnly), span, tt.from.Format(time.TimeOnly), tt.to.Format(time.TimeOnly), tt.now.Sub(tt.from))
		}
		if from.UnixNano()%int64(time.Minute) != 0 || to.UnixNano()%int64(time.Minute) != 0 {
			t.Errorf("RecentWindow(%s, %s): bounds %s, %s not on whole minutes", tt.now, tt.d, from, to)
		}
	}
}
