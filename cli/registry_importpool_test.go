package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashgrid/hashgrid/alert"
	"github.com/hashgrid/hashgrid/sqlite"
)

// TestImportPoolRefusesOtherDatabase points `registry import-pool --db` at the pool's
// alerts.db, as made by the alert package beside a real share store, and checks that
// it is refused with an error that says why, that the file is left byte for byte as it
// was (no share schema added), and that the registry records nothing.
func TestImportPoolRefusesOtherDatabase(t *testing.T) {
	dir := t.TempDir()
	poolData := filepath.Join(dir, "pool")
	if err := os.MkdirAll(poolData, 0o750); err != nil {
		t.Fatal(err)
	}
	store, err := sqlite.Open(filepath.Join(poolData, "hashgrid.db"))
	if err != nil {
		t.Fatal(err)
	}
	mon, err := alert.Open(alert.Config{Dir: poolData, Source: store})
	if err != nil {
		t.Fatal(err)
	}
	mon.Close()
	store.Close()
	alerts := filepath.Join(poolData, "alerts.db")
	before, err := os.ReadFile(alerts)
	if err != nil {
		t.Fatal(err)
	}
	files := func() []string {
		es, _ := os.ReadDir(poolData)
		var out []string
		for _, e := range es {
			out = append(out, e.Name())
		}
		return out
	}
	listed := strings.Join(files(), " ")

	d := "-data=" + filepath.Join(dir, "registry")
	mustRun(t, "registry", "init", d, "-operator=op1", "-name=Nordlys Compute AS", "-country=NO")
	mustRun(t, "registry", "site", "add", d, "-id=s1", "-operator=op1", "-location=Alta", "-grid=Arva 22 kV", "-capacity-kw=200")
	mustRun(t, "registry", "device", "add", d, "-id=asic-a", "-site=s1", "-group=miners", "-kind=asic", "-count=4", "-rated-w=3250",
		"-pool-address=bcrt1qexample", "-workers=rack1-*")
	logPath := filepath.Join(dir, "registry", "registry.jsonl")
	logBefore, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	_, stderr, err := runCLI(t, "registry", "import-pool", d, "-db="+alerts, "-site=s1",
		"-from=2026-03-02T10:00:00Z", "-to=2026-03-02T11:00:00Z")
	if err == nil || !strings.Contains(stderr, "not a hashgrid share store") {
		t.Fatalf("import-pool of alerts.db: got %v, stderr %q; want it refused as not a share store", err, stderr)
	}
	after, err := os.ReadFile(alerts)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Fatal("import-pool changed alerts.db")
	}
	if got := strings.Join(files(), " "); got != listed {
		t.Fatalf("pool data directory after the refused import: %s; before: %s", got, listed)
	}
	if logAfter, err := os.ReadFile(logPath); err != nil || !bytes.Equal(logAfter, logBefore) {
		t.Fatalf("the refused import changed the registry's log (%v)", err)
	}

	// The store beside it imports.
	out := mustRun(t, "registry", "import-pool", d, "-db="+filepath.Join(poolData, "hashgrid.db"), "-site=s1",
		"-from=2026-03-02T10:00:00Z", "-to=2026-03-02T11:00:00Z")
	if !strings.Contains(out, "0 workers") {
		t.Fatalf("import-pool of the share store: %q", out)
	}
}
