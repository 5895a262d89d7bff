package ercot

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashgrid/hashgrid/power"
)

// testdata is where the repository keeps the real ERCOT prices the tests read
// (README.md there gives their source, licence and checksums).
const testdata = "../backtest/testdata"

// wideYear returns the path of the repository's wide price file of year.
func wideYear(year string) string { return filepath.Join(testdata, "ercot-"+year+".csv.gz") }

// published returns the path of the repository's copy of ERCOT's published file name
// (RTM-2019-02.csv or RTM-2020-02.csv).
func published(name string) string { return filepath.Join(testdata, "ercot-"+name+".gz") }

func mustZone(tb testing.TB, s string) power.Zone {
	tb.Helper()
	z, err := power.ParseZone(s)
	if err != nil {
		tb.Fatal(err)
	}
	return z
}

func TestWideYears(t *testing.T) {
	cases := []struct {
		year          string
		n             int
		max, min      string
		maxAt, minAt  string // Central wall time
		springMissing string // first interval after the skipped hour
		fallRepeat    string
	}{
		{"2018", 35040, "5803.25", "-21.17", "2018-01-23 06:45", "2018-04-11 01:00", "2018-03-11", "2018-11-04"},
		{"2019", 35040, "9039.53", "-24.26", "2019-08-13 16:15", "2019-10-23 02:45", "2019-03-10", "2019-11-03"},
		{"2020", 35136, "2219.21", "-24.58", "2020-08-15 15:15", "2020-12-30 04:15", "2020-03-08", "2020-11-01"},
	}
	for _, c := range cases {
		t.Run(c.year, func(t *testing.T) {
			ivs, err := ReadFile(wideYear(c.year), mustZone(t, "LZ_WEST"))
			if err != nil {
				t.Fatal(err)
			}
			if got := len(ivs); got != c.n {
				t.Errorf("intervals: got %d, want %d", got, c.n)
			}
			hi, lo := ivs[0], ivs[0]
			for _, iv := range ivs {
				if iv.Price > hi.Price {
					hi = iv
				}
				if iv.Price < lo.Price {
					lo = iv
				}
			}
			if got := hi.Price.String(); got != c.max {
				t.Errorf("max: got %s, want %s", got, c.max)
			}
			if got := lo.Price.String(); got != c.min {
				t.Errorf("min: got %s, want %s", got, c.min)
			}
			if got := power.InCentral(hi.Start).Format("2006-01-02 15:04"); got != c.maxAt {
				t.Errorf("max at: got %s, want %s", got, c.maxAt)
			}
			if got := power.InCentral(lo.Start).Format("2006-01-02 15:04"); got != c.minAt {
				t.Errorf("min at: got %s, want %s", got, c.minAt)
			}
			// Spring: the local day has 92 intervals, no 02:xx; autumn: 100, 01:xx twice.
			perDay := map[string]int{}
			hour2 := map[string]int{}
			for _, iv := range ivs {
				lt := power.InCentral(iv.Start)
				d := lt.Format("2006-01-02")
				perDay[d]++
				if lt.Hour() == 1 {
					hour2[d]++
				}
			}
			if got := perDay[c.springMissing]; got != 92 {
				t.Errorf("spring %s: got %d intervals, want 92", c.springMissing, got)
			}
			if got := perDay[c.fallRepeat]; got != 100 {
				t.Errorf("autumn %s: got %d intervals, want 100", c.fallRepeat, got)
			}
			if got := hour2[c.fallRepeat]; got != 8 {
				t.Errorf("autumn %s: got %d intervals in the 01:00 hour, want 8", c.fallRepeat, got)
			}
			for i := 1; i < len(ivs); i++ {
				if d := ivs[i].Start.Sub(ivs[i-1].Start); d != power.IntervalLength {
					t.Fatalf("interval %d: step %v", i, d)
				}
			}
		})
	}
}

func TestWideFallRepeatPrices(t *testing.T) {
	ivs, err := ReadFile(wideYear("2018"), mustZone(t, "LZ_WEST"))
	if err != nil {
		t.Fatal(err)
	}
	// 2018-11-04 01:00 CDT is 06:00Z (19.84); 01:00 CST is 07:00Z (19.29).
	want := map[string]string{"2018-11-04T06:00:00Z": "19.84", "2018-11-04T07:00:00Z": "19.29", "2018-03-11T08:00:00Z": "12.17"}
	for _, iv := range ivs {
		if w, ok := want[iv.Start.Format(time.RFC3339)]; ok {
			if got := iv.Price.String(); got != w {
				t.Errorf("%s: got %s, want %s", iv.Start.Format(time.RFC3339), got, w)
			}
			delete(want, iv.Start.Format(time.RFC3339))
		}
	}
	if len(want) > 0 {
		t.Errorf("intervals not found: %v", want)
	}
}

func TestPublishedLayout(t *testing.T) {
	cases := []struct {
		file, zone string
		n          int
		max        string
		first      string
	}{
		{"RTM-2019-02.csv", "LZ_CPS", 2688, "", ""},
		{"RTM-2019-02.csv", "LZ_WEST", 2688, "", ""},
		{"RTM-2019-02.csv", "LZ_WEST/LZEW", 2688, "", ""},
		{"RTM-2020-02.csv", "HB_PAN", 2784, "", ""},
	}
	for _, c := range cases {
		t.Run(c.file+"/"+c.zone, func(t *testing.T) {
			ivs, err := ReadFile(published(c.file), mustZone(t, c.zone))
			if err != nil {
				t.Fatal(err)
			}
			if got := len(ivs); got != c.n {
				t.Errorf("intervals: got %d, want %d", got, c.n)
			}
			if got, want := ivs[0].Start.Format(time.RFC3339), c.file[4:11]+"-01T06:00:00Z"; got != want {
				t.Errorf("first: got %s, want %s", got, want)
			}
		})
	}
}

func TestPublishedQuotedThousandsAndLZEW(t *testing.T) {
	lz, err := ReadFile(published("RTM-2019-02.csv"), mustZone(t, "LZ_CPS"))
	if err != nil {
		t.Fatal(err)
	}
	ew, err := ReadFile(published("RTM-2019-02.csv"), mustZone(t, "LZ_CPS/LZEW"))
	if err != nil {
		t.Fatal(err)
	}
	// 02/09/2019 hour ending 10, interval 2: 09:15 CST = 15:15Z; LZ "1,769.93", LZEW "1,770.03".
	at := time.Date(2019, 2, 9, 15, 15, 0, 0, time.UTC)
	find := func(ivs []power.Interval) string {
		for _, iv := range ivs {
			if iv.Start.Equal(at) {
				return iv.Price.String()
			}
		}
		return "missing"
	}
	if got := find(lz); got != "1769.93" {
		t.Errorf("LZ: got %s, want 1769.93", got)
	}
	if got := find(ew); got != "1770.03" {
		t.Errorf("LZEW: got %s, want 1770.03", got)
	}
	var neg int
	for _, iv := range lz {
		if iv.Price < 0 {
			neg++
		}
	}
	t.Logf("LZ_CPS February 2019: %d negative intervals", neg)
}

func TestPublishedDST(t *testing.T) {
	// November 2018: hour ending 2 appears twice, the second flagged Y.
	var b strings.Builder
	b.WriteString(strings.Join(publishedHeader, ",") + "\n")
	for _, h := range []struct {
		hour int
		flag string
	}{{1, "N"}, {2, "N"}, {2, "Y"}, {3, "N"}} {
		for q := 1; q <= 4; q++ {
			b.WriteString("11/04/2018," + itoa(h.hour) + "," + itoa(q) + "," + h.flag + ",LZ_WEST,LZ,\"1,000.5\"\n")
		}
	}
	ivs, err := Read(strings.NewReader(b.String()), mustZone(t, "LZ_WEST"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(ivs), 16; got != want {
		t.Fatalf("intervals: got %d, want %d", got, want)
	}
	if got, want := ivs[0].Start.Format(time.RFC3339), "2018-11-04T05:00:00Z"; got != want {
		t.Errorf("first: got %s, want %s", got, want)
	}
	if got, want := ivs[15].Start.Format(time.RFC3339), "2018-11-04T08:45:00Z"; got != want {
		t.Errorf("last: got %s, want %s", got, want)
	}
	if got := ivs[0].Price.String(); got != "1000.50" {
		t.Errorf("price: got %s, want 1000.50", got)
	}
}

func itoa(i int) string { return string(rune('0'+i/10%10)) + string(rune('0'+i%10)) }

func TestRefused(t *testing.T) {
	z := power.Zone{Name: "LZ_WEST"}
	wide := "time,LZ_WEST\n"
	cases := []struct {
		name, in, want string
	}{
		{"empty", "", "line 1: empty file"},
		{"header", "a,b,c\n", "line 1: unknown header"},
		{"zone", "time,LZ_NORTH\n2019-01-01 00:00:00,1\n", "zone LZ_WEST not among"},
		{"price", wide + "2019-01-01 00:00:00,abc\n", "line 2: column LZ_WEST"},
		{"decimals", wide + "2019-01-01 00:00:00,1.234\n", "line 2: column LZ_WEST: price \"1.234\""},
		{"time", wide + "2019-01-01T00:00,1\n", "line 2: time"},
		{"quarter", wide + "2019-01-01 00:10:00,1\n", "line 2: time \"2019-01-01 00:10:00\" is not a 15-minute"},
		{"gap", wide + "2019-01-01 00:00:00,1\n2019-01-01 00:30:00,1\n", "line 3: gap: 1 interval missing from 2019-01-01 00:15 CST to 2019-01-01 00:30 CST (US Central)"},
		// The file's own (Central) times, in daylight time in summer: not UTC's.
		{"summer gap", wide + "2019-08-13 15:45:00,1\n2019-08-13 17:00:00,1\n", "line 3: gap: 4 intervals missing from 2019-08-13 16:00 CDT to 2019-08-13 17:00 CDT (US Central)"},
		{"published gap", strings.Join(publishedHeader, ",") + "\n08/13/2019,17,1,N,LZ_WEST,LZ,1\n08/13/2019,17,3,N,LZ_WEST,LZ,1\n", "line 3: gap: 1 interval missing from 2019-08-13 16:15 CDT to 2019-08-13 16:30 CDT (US Central)"},
		{"repeat", wide + "2019-01-01 00:00:00,1\n2019-01-01 00:00:00,1\n", "line 3: 2019-01-01 00:00:00 does not exist"},
		{"skipped hour", wide + "2019-03-10 01:45:00,1\n2019-03-10 02:00:00,1\n", "line 3: 2019-03-10 02:00:00 does not exist"},
		{"fields", wide + "2019-01-01 00:00:00,1,2\n", "line 2: 3 fields"},
		{"lzew wide", wide, "no energy-weighted"},
		{"published hour", strings.Join(publishedHeader, ",") + "\n02/01/2019,25,1,N,LZ_WEST,LZ,1\n", "line 2: Delivery Hour"},
		{"published flag", strings.Join(publishedHeader, ",") + "\n02/01/2019,1,1,X,LZ_WEST,LZ,1\n", "line 2: Repeated Hour Flag"},
		{"published comma", strings.Join(publishedHeader, ",") + "\n02/01/2019,1,1,N,LZ_WEST,LZ,\"10,00.5\"\n", "line 2: Settlement Point Price"},
		{"published dup", strings.Join(publishedHeader, ",") + "\n02/01/2019,1,1,N,LZ_WEST,LZ,1\n02/01/2019,1,1,N,LZ_WEST,LZ,1\n", "line 3: interval 2019-02-01 00:00 CST repeats"},
		{"published flag not dst", strings.Join(publishedHeader, ",") + "\n02/01/2019,2,1,Y,LZ_WEST,LZ,1\n", "line 2: 02/01/2019 hour ending 2 (repeated true) does not exist"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			zz := z
			if c.name == "lzew wide" {
				zz.EnergyWeighted = true
			}
			_, err := Read(strings.NewReader(c.in), zz)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got error %v, want one containing %q", err, c.want)
			}
		})
	}
}

func FuzzRead(f *testing.F) {
	f.Add("time,LZ_WEST\n2019-01-01 00:00:00,1\n2019-01-01 00:15:00,-2.5\n")
	f.Add("time,LZ_WEST\n2018-11-04 01:45:00,1\n2018-11-04 01:00:00,2\n")
	f.Add(strings.Join(publishedHeader, ",") + "\n02/01/2019,1,1,N,LZ_WEST,LZ,\"1,000.5\"\n02/01/2019,1,2,N,LZ_WEST,LZEW,3\n")
	f.Fuzz(func(t *testing.T, in string) {
		for _, z := range []power.Zone{{Name: "LZ_WEST"}, {Name: "LZ_WEST", EnergyWeighted: true}} {
			ivs, err := Read(strings.NewReader(in), z)
			if err != nil {
				continue
			}
			if len(ivs) == 0 {
				t.Fatal("no error and no intervals")
			}
			for i := 1; i < len(ivs); i++ {
				if ivs[i].Start.Sub(ivs[i-1].Start) != power.IntervalLength {
					t.Fatalf("interval %d not 15 minutes after the previous", i)
				}
			}
		}
	})
}

// TestGzip reads 2017 (the backtests' year before 2018, kept compressed) and a
// compressed copy of 2018: the same intervals as the plain file, and a truncated
// compressed file is refused.
func TestGzip(t *testing.T) {
	z := mustZone(t, "LZ_WEST")
	y2017, err := ReadFile("../backtest/testdata/ercot-2017.csv.gz", z)
	if err != nil {
		t.Fatal(err)
	}
	// 2017 has no leap day; the autumn repeat adds four intervals, the spring gap
	// takes four away.
	if len(y2017) != 365*96 {
		t.Errorf("2017: %d intervals, want %d", len(y2017), 365*96)
	}
	if got := y2017[len(y2017)-1].End(); !got.Equal(time.Date(2018, 1, 1, 6, 0, 0, 0, time.UTC)) {
		t.Errorf("2017 ends at %s, want 2018-01-01 00:00 Central (06:00 UTC)", got)
	}
	// 2018 read plain and compressed: the same intervals.
	zdata, err := os.ReadFile(wideYear("2018"))
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(zdata))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	plain := filepath.Join(dir, "2018.csv")
	if err := os.WriteFile(plain, b, 0o644); err != nil {
		t.Fatal(err)
	}
	zb := bytes.NewBuffer(zdata)
	gz := wideYear("2018")
	want, err := ReadFile(plain, z)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ReadFile(gz, z)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) || got[len(got)-1] != want[len(want)-1] || got[1000] != want[1000] {
		t.Errorf("compressed 2018: %d intervals, plain %d", len(got), len(want))
	}
	cut := filepath.Join(dir, "cut.csv.gz")
	if err := os.WriteFile(cut, zb.Bytes()[:zb.Len()/2], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFile(cut, z); err == nil {
		t.Error("a truncated compressed file was read without an error")
	}
}

// TestTestdataChecksums checks the repository's price files against the SHA-256 sums
// that ../backtest/testdata/README.md gives for their uncompressed contents, and that
// the README gives each of them.
func TestTestdataChecksums(t *testing.T) {
	want := map[string]string{
		"ercot-2017.csv.gz":        "dac478e8de91a0cf54a2c0aa5272d74f8b993cc82fedcbde93eea05374468529",
		"ercot-2018.csv.gz":        "db5ba54374e4a3e8cb94bda5495438e9bb91149b00c164d37acb2f94c133ce8e",
		"ercot-2019.csv.gz":        "b83ee599edb135ca54f588ce20f8a4feb99e88def7cddfee107cb2d782303770",
		"ercot-2020.csv.gz":        "dc472cb403a85b8f75a21af874efce0875d9108a3747bd1737602a1bf33886f8",
		"ercot-2021.csv.gz":        "8c3995d4308990f506819e3c2233cb1206105ccfb47fe26e6f89afaa5198b318",
		"ercot-2022.csv.gz":        "46a41c509fb24d437c951b4da8f8f65b33088bb6a1ac6b481f67661448f9934d",
		"ercot-RTM-2019-02.csv.gz": "c180c654d3a10e66438f9354866e18e43149fe21f7ceb4bdcdebbbc1b89533ec",
		"ercot-RTM-2020-02.csv.gz": "1730104609ca4e0191e6b69663b9571f13eb76f4e6ffeac9491b87b9a27a97c8",
	}
	readme, err := os.ReadFile(filepath.Join(testdata, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(testdata, "*.gz"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(want) {
		t.Errorf("testdata holds %d compressed files, the table %d: %v", len(files), len(want), files)
	}
	for name, sum := range want {
		f, err := os.Open(filepath.Join(testdata, name))
		if err != nil {
			t.Error(err)
			continue
		}
		zr, err := gzip.NewReader(f)
		if err != nil {
			f.Close()
			t.Errorf("%s: %v", name, err)
			continue
		}
		h := sha256.New()
		_, err = io.Copy(h, zr)
		f.Close()
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != sum {
			t.Errorf("%s: SHA-256 %s, want %s", name, got, sum)
		}
		if !bytes.Contains(readme, []byte(sum)) {
			t.Errorf("README.md does not give %s's checksum %s", name, sum)
		}
	}
}
