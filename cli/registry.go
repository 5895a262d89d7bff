package cli

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hashgrid/hashgrid/pool"
	"github.com/hashgrid/hashgrid/registry"
	"github.com/hashgrid/hashgrid/sqlite"
)

const registryUsage = `usage: hashgrid registry <verb> [flags]

verbs:
  init                 create the log and the operator's signing key
  operator add         register an operator
  site add             register a site
  device add           register a batch of devices in a device group
  workload add         declare a device group's workload class
  classes              list the workload classes (built-in plus -classes file)
  import-energy        import the power controller's energy log (<data>/energy.jsonl)
  import-meter         import meter readings (CSV: ` + registry.MeterHeader + `)
  import-jobs          import AI job records (JSON lines)
  import-pool          import the pool's shares from its SQLite store for a site and period
  revenue add          record revenue of a device group
  report               write a signed report (JSON and HTML) for a site and period
  anchor               commit the log's head to the Bitcoin chain, in a transaction or the pool's coinbase
  verify               check a log or a report offline, and its anchor against a node

Run 'hashgrid registry <verb> -h' for a verb's flags.
`

func registryCommand() *Command {
	return &Command{
		Name:  "registry",
		Short: "declared workloads, evidence and signed reports",
		Run:   runRegistry,
	}
}

// registryVerbs maps "verb" or "noun add" to its handler.
func registryVerbs() map[string]func(context.Context, []string, Env) error {
	return map[string]func(context.Context, []string, Env) error{
		"init":          regInit,
		"operator add":  regOperatorAdd,
		"site add":      regSiteAdd,
		"device add":    regDeviceAdd,
		"workload add":  regWorkloadAdd,
		"classes":       regClasses,
		"import-energy": regImportEnergy,
		"import-meter":  regImportMeter,
		"import-jobs":   regImportJobs,
		"import-pool":   regImportPool,
		"revenue add":   regRevenueAdd,
		"report":        regReport,
		"anchor":        regAnchor,
		"verify":        regVerify,
	}
}

func runRegistry(ctx context.Context, args []string, env Env) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		io.WriteString(env.Stderr, registryUsage)
		if len(args) == 0 {
			return fmt.Errorf("%w: no verb", ErrUsage)
		}
		return nil
	}
	verbs := registryVerbs()
	name, rest := args[0], args[1:]
	if _, ok := verbs[name]; !ok && len(args) > 1 {
		name, rest = args[0]+" "+args[1], args[2:]
	}
	run, ok := verbs[name]
	if !ok {
		io.WriteString(env.Stderr, registryUsage)
		return fmt.Errorf("%w: unknown verb %q", ErrUsage, strings.Join(args[:min(2, len(args))], " "))
	}
	return run(ctx, rest, env)
}

// regFlags are the flags every verb that opens the registry takes.
type regFlags struct {
	data string
	key  string
}

func (f *regFlags) add(fs *flag.FlagSet, env Env) {
	def := "data"
	if d := env.Getenv("HASHGRID_DATA"); d != "" {
		def = d
	}
	fs.StringVar(&f.data, "data", def, "data directory holding "+registry.LogFile+" (default from HASHGRID_DATA)")
	fs.StringVar(&f.key, "key", "", "operator's Ed25519 key file (default <data>/registry.key)")
}

func (f *regFlags) keyPath() string {
	if f.key != "" {
		return f.key
	}
	return filepath.Join(f.data, "registry.key")
}

func (f *regFlags) open(env Env) (*registry.Registry, error) {
	key, err := registry.LoadKey(f.keyPath())
	if err != nil {
		return nil, err
	}
	return registry.Open(registry.Config{Dir: f.data, Key: key, Logger: regLogger(env)})
}

func regLogger(env Env) *slog.Logger {
	return slog.New(slog.NewTextHandler(env.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func parseWhen(name, s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: -%s %q is not an RFC 3339 time", ErrUsage, name, s)
	}
	return t, nil
}

func required(pairs ...string) error {
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i+1] == "" {
			return fmt.Errorf("%w: -%s is required", ErrUsage, pairs[i])
		}
	}
	return nil
}

func regInit(ctx context.Context, args []string, env Env) error {
	fs := newFlagSet("registry init", env)
	var rf regFlags
	rf.add(fs, env)
	var op registry.Operator
	fs.StringVar(&op.ID, "operator", "", "operator id to register with the log (optional)")
	fs.StringVar(&op.Name, "name", "", "operator's legal name")
	fs.StringVar(&op.Country, "country", "", "operator's country (ISO 3166-1 alpha-2)")
	fs.StringVar(&op.LegalID, "legal-id", "", "operator's company registration number")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := os.MkdirAll(rf.data, 0o755); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(rf.data, registry.LogFile)); err == nil {
		return fmt.Errorf("registry: %s already exists", filepath.Join(rf.data, registry.LogFile))
	}
	key, err := registry.LoadKey(rf.keyPath())
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			return err
		}
		if key, err = registry.GenerateKey(rf.keyPath()); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "created key %s\n", rf.keyPath())
	}
	r, err := registry.Create(registry.Config{Dir: rf.data, Key: key, Logger: regLogger(env)})
	if err != nil {
		return err
	}
	if op.ID != "" {
		if err := r.AddOperator(op); err != nil {
			return err
		}
	}
	fmt.Fprintf(env.Stdout, "created %s\npublic key %x\n", r.Path(), key.Public().(ed25519.PublicKey))
	return nil
}

func regOperatorAdd(ctx context.Context, args []string, env Env) error {
	fs := newFlagSet("registry operator add", env)
	var rf regFlags
	rf.add(fs, env)
	var op registry.Operator
	fs.StringVar(&op.ID, "id", "", "operator id")
	fs.StringVar(&op.Name, "name", "", "legal name")
	fs.StringVar(&op.Country, "country", "", "country (ISO 3166-1 alpha-2)")
	fs.StringVar(&op.LegalID, "legal-id", "", "company registration number")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := required("id", op.ID, "name", op.Name); err != nil {
		return err
	}
	r, err := rf.open(env)
	if err != nil {
		return err
	}
	return done(env, r, r.AddOperator(op))
}

func done(env Env, r *registry.Registry, err error) error {
	if err != nil {
		return err
	}
	st := r.State()
	fmt.Fprintf(env.Stdout, "entry %d %s\n", st.HeadSeq, st.HeadHash)
	return nil
}

func regSiteAdd(ctx context.Context, args []string, env Env) error {
	fs := newFlagSet("registry site add", env)
	var rf regFlags
	rf.add(fs, env)
	var s registry.Site
	fs.StringVar(&s.ID, "id", "", "site id")
	fs.StringVar(&s.Operator, "operator", "", "operator id")
	fs.StringVar(&s.Name, "name", "", "site name")
	fs.StringVar(&s.Location, "location", "", "address or coordinates")
	fs.StringVar(&s.Country, "country", "", "country (ISO 3166-1 alpha-2)")
	fs.StringVar(&s.Grid, "grid", "", "grid connection: network operator, voltage level, meter point id")
	fs.Int64Var(&s.CapacityKW, "capacity-kw", 0, "contracted connection capacity in kW")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := required("id", s.ID, "operator", s.Operator); err != nil {
		return err
	}
	if s.Name == "" {
		s.Name = s.ID
	}
	r, err := rf.open(env)
	if err != nil {
		return err
	}
	return done(env, r, r.AddSite(s))
}

func regDeviceAdd(ctx context.Context, args []string, env Env) error {
	fs := newFlagSet("registry device add", env)
	var rf regFlags
	rf.add(fs, env)
	var d registry.Device
	fs.StringVar(&d.ID, "id", "", "device id (one batch of identical machines)")
	fs.StringVar(&d.Site, "site", "", "site id")
	fs.StringVar(&d.Group, "group", "", "device group the machines belong to")
	fs.StringVar(&d.Kind, "kind", "", "asic, gpu, cpu or storage")
	fs.StringVar(&d.Model, "model", "", "make and model")
	fs.Int64Var(&d.Count, "count", 1, "number of machines")
	fs.Int64Var(&d.RatedW, "rated-w", 0, "rated power of one machine in W")
	fs.Int64Var(&d.GPUs, "gpus", 0, "GPUs per machine (gpu kind)")
	fs.Int64Var(&d.Cores, "cores", 0, "CPU cores per machine: leased compute's CPU-hours are checked against them")
	fs.StringVar(&d.PoolAddress, "pool-address", "", "payout address the machines mine to, if any")
	fs.StringVar(&d.WorkerPattern, "workers", "", "pool worker names of the machines (pattern, e.g. rack1-*)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := required("id", d.ID, "site", d.Site, "group", d.Group, "kind", d.Kind); err != nil {
		return err
	}
	r, err := rf.open(env)
	if err != nil {
		return err
	}
	return done(env, r, r.AddDevice(d))
}

func regWorkloadAdd(ctx context.Context, args []string, env Env) error {
	fs := newFlagSet("registry workload add", env)
	var rf regFlags
	rf.add(fs, env)
	var site, group, class, from, note, classFile string
	fs.StringVar(&site, "site", "", "site id")
	fs.StringVar(&group, "group", "", "device group")
	fs.StringVar(&class, "class", "", "workload class id (see 'hashgrid registry classes')")
	fs.StringVar(&from, "from", "", "RFC 3339 time the declaration applies from (default now)")
	fs.StringVar(&note, "note", "", "free text")
	fs.StringVar(&classFile, "classes", "", "operator's class file (JSON) extending the built-in classes")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := required("site", site, "group", group, "class", class); err != nil {
		return err
	}
	t := time.Now()
	if from != "" {
		var err error
		if t, err = parseWhen("from", from); err != nil {
			return err
		}
	}
	classes, err := registry.LoadClasses(classFile)
	if err != nil {
		return err
	}
	r, err := rf.open(env)
	if err != nil {
		return err
	}
	return done(env, r, r.Declare(classes, site, group, class, t, note))
}

func regClasses(ctx context.Context, args []string, env Env) error {
	fs := newFlagSet("registry classes", env)
	classFile := fs.String("classes", "", "operator's class file (JSON) extending the built-in classes")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	classes, err := registry.LoadClasses(*classFile)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "%-20s %-12s %-8s %s\n", "id", "industry", "positive", "name")
	for _, c := range classes.All() {
		fmt.Fprintf(env.Stdout, "%-20s %-12s %-8t %s\n", c.ID, c.Industry, c.PositiveList, c.Name)
	}
	return nil
}

func printImport(env Env, what string, res registry.ImportResult) {
	if res.Seq == 0 {
		fmt.Fprintf(env.Stdout, "%s: nothing new (%d already recorded)\n", what, res.Skipped)
		return
	}
	fmt.Fprintf(env.Stdout, "%s: entry %d, %d added, %d already recorded\n", what, res.Seq, res.Added, res.Skipped)
	for _, g := range res.Gaps {
		fmt.Fprintf(env.Stdout, "  gap: meter %s %s..%s (%s)\n", g.Meter, g.Start.Format(time.RFC3339), g.End.Format(time.RFC3339), g.Where)
	}
}

// importFile opens the registry and the file, imports it with fn and prints what was
// added: the part every file import shares.
func importFile(env Env, rf *regFlags, path, what string, fn func(r *registry.Registry, f io.Reader, name string) (registry.ImportResult, error)) error {
	r, err := rf.open(env)
	if err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	res, err := fn(r, f, path)
	if err != nil {
		return err
	}
	printImport(env, what, res)
	return nil
}

func regImportEnergy(ctx context.Context, args []string, env Env) error {
	fs := newFlagSet("registry import-energy", env)
	var rf regFlags
	rf.add(fs, env)
	file := fs.String("file", "", "energy log (default <data>/energy.jsonl)")
	site := fs.String("site", "", "import only this site's lines")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *file == "" {
		*file = filepath.Join(rf.data, "energy.jsonl")
	}
	return importFile(env, &rf, *file, "energy", func(r *registry.Registry, f io.Reader, name string) (registry.ImportResult, error) {
		return r.ImportEnergy(f, name, *site)
	})
}

func regImportMeter(ctx context.Context, args []string, env Env) error {
	fs := newFlagSet("registry import-meter", env)
	var rf regFlags
	rf.add(fs, env)
	file := fs.String("file", "", "meter CSV ("+registry.MeterHeader+")")
	allowGaps := fs.Bool("allow-gaps", false, "record gaps in a meter's readings (flagged in reports) instead of refusing the file")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := required("file", *file); err != nil {
		return err
	}
	return importFile(env, &rf, *file, "meter", func(r *registry.Registry, f io.Reader, name string) (registry.ImportResult, error) {
		return r.ImportMeters(f, name, *allowGaps)
	})
}

func regImportJobs(ctx context.Context, args []string, env Env) error {
	fs := newFlagSet("registry import-jobs", env)
	var rf regFlags
	rf.add(fs, env)
	file := fs.String("file", "", `job records, JSON lines {"job","device_group","start","end","gpu_hours" and/or "cpu_hours"}`)
	site := fs.String("site", "", "site the device groups belong to")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := required("file", *file, "site", *site); err != nil {
		return err
	}
	return importFile(env, &rf, *file, "jobs", func(r *registry.Registry, f io.Reader, name string) (registry.ImportResult, error) {
		return r.ImportJobs(f, name, *site)
	})
}

func regImportPool(ctx context.Context, args []string, env Env) error {
	fs := newFlagSet("registry import-pool", env)
	var rf regFlags
	rf.add(fs, env)
	dbPath := fs.String("db", "", "the pool's SQLite share store (hashgrid.db in its data directory), read only")
	site := fs.String("site", "", "site whose devices' payout addresses to take")
	from := fs.String("from", "", "RFC 3339 start of the period")
	to := fs.String("to", "", "RFC 3339 end of the period")
	sampleRate := fs.Uint64("sample-rate", pool.DefaultSampleRate, "the pool keeps the header of 1 share in this many (its sample rate: 1 on regtest); a higher value gives a smaller sample, a lower one fails")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := required("db", *dbPath, "site", *site, "from", *from, "to", *to); err != nil {
		return err
	}
	f, err := parseWhen("from", *from)
	if err != nil {
		return err
	}
	t, err := parseWhen("to", *to)
	if err != nil {
		return err
	}
	// Read-only: the pool's store is never written, and a file that is not one (the
	// pool's alerts.db, say) is refused untouched rather than given the store's schema.
	db, err := sqlite.OpenReadOnly(*dbPath)
	if err != nil {
		return err
	}
	defer db.Close()
	r, err := rf.open(env)
	if err != nil {
		return err
	}
	res, err := r.ImportPoolSampled(ctx, db, *site, f, t, *sampleRate)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "pool: entry %d, %d workers of the site's addresses\n", res.Seq, res.Added)
	return nil
}

func regRevenueAdd(ctx context.Context, args []string, env Env) error {
	fs := newFlagSet("registry revenue add", env)
	var rf regFlags
	rf.add(fs, env)
	var v registry.RevenueRecord
	var from, to string
	fs.StringVar(&v.Site, "site", "", "site id")
	fs.StringVar(&v.Group, "group", "", "device group")
	fs.StringVar(&from, "from", "", "RFC 3339 start")
	fs.StringVar(&to, "to", "", "RFC 3339 end")
	fs.Int64Var(&v.Sat, "sat", 0, "revenue in satoshis")
	fs.Int64Var(&v.MicroUSD, "micro-usd", 0, "revenue in micro-dollars")
	fs.StringVar(&v.Source, "source", "", "where the figure comes from (payout txid, invoice number)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := required("site", v.Site, "group", v.Group, "from", from, "to", to, "source", v.Source); err != nil {
		return err
	}
	var err error
	if v.From, err = parseWhen("from", from); err != nil {
		return err
	}
	if v.To, err = parseWhen("to", to); err != nil {
		return err
	}
	r, err := rf.open(env)
	if err != nil {
		return err
	}
	return done(env, r, r.AddRevenue(v))
}

func regReport(ctx context.Context, args []string, env Env) error {
	fs := newFlagSet("registry report", env)
	var rf regFlags
	rf.add(fs, env)
	site := fs.String("site", "", "site id")
	from := fs.String("from", "", "RFC 3339 start of the period")
	to := fs.String("to", "", "RFC 3339 end of the period")
	out := fs.String("out", "", "directory for the report files (default <data>/reports)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := required("site", *site, "from", *from, "to", *to); err != nil {
		return err
	}
	f, err := parseWhen("from", *from)
	if err != nil {
		return err
	}
	t, err := parseWhen("to", *to)
	if err != nil {
		return err
	}
	if *out == "" {
		*out = filepath.Join(rf.data, "reports")
	}
	r, err := rf.open(env)
	if err != nil {
		return err
	}
	file, rep, page, err := r.Report(*site, f, t)
	if err != nil {
		return err
	}
	jp, hp, err := registry.SaveReport(*out, file, page)
	if err != nil {
		return err
	}
	errs, warns := 0, 0
	for _, d := range rep.Discrepancies {
		if d.Severity == registry.SeverityError {
			errs++
		} else {
			warns++
		}
	}
	fmt.Fprintf(env.Stdout, "report entry %d\n%s\n%s\n%d discrepancies (%d errors, %d warnings)\n", file.Entry.Seq, jp, hp, len(rep.Discrepancies), errs, warns)
	for _, d := range rep.Discrepancies {
		fmt.Fprintf(env.Stdout, "  %s %s %s: %s\n", d.Severity, d.Code, d.Group, d.Message)
	}
	return nil
}

// MaxVerifyFileBytes bounds the files verify reads.
const MaxVerifyFileBytes = 1 << 30

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxVerifyFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxVerifyFileBytes {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, MaxVerifyFileBytes)
	}
	return b, nil
}

func regVerify(ctx context.Context, args []string, env Env) error {
	fs := newFlagSet("registry verify", env)
	logPath := fs.String("log", "", "registry log to check (and to find a report's entry in)")
	report := fs.String("report", "", "report file (JSON) to check")
	html := fs.String("html", "", "the report's HTML page to check against it")
	pubHex := fs.String("pubkey", "", "operator's Ed25519 public key (hex) to pin")
	nodeURL := fs.String("node", "", "node RPC URL http://USER:PASS@HOST:PORT: check the report's anchor (or, with only -log, the log's anchors) on its best chain")
	sharesDB := fs.String("shares", "", "the pool's SQLite share store (or a copy), read only: recompute the report's share commitments from it")
	chainFile := fs.String("chain", "", `instead of -node, blocks saved from a block explorer you trust: JSON {"blocks":[{"height":N,"hex":"RAW BLOCK"}]}`)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *logPath == "" && *report == "" {
		return fmt.Errorf("%w: -log or -report is required", ErrUsage)
	}
	if *sharesDB != "" && *report == "" {
		return fmt.Errorf("%w: -shares checks a report: give -report", ErrUsage)
	}
	var pin ed25519.PublicKey
	if *pubHex != "" {
		k, err := registry.ParsePublicKey(*pubHex)
		if err != nil {
			return fmt.Errorf("%w: -pubkey: %v", ErrUsage, err)
		}
		pin = k
	}
	var log *registry.Log
	if *logPath != "" {
		b, err := readBounded(*logPath)
		if err != nil {
			return err
		}
		if log, err = registry.ReadLog(bytes.NewReader(b), pin); err != nil {
			return err
		}
		sum := log.Summary()
		fmt.Fprintf(env.Stdout, "log ok: %d entries, head %d %s, key %x", sum.Entries, sum.HeadSeq, sum.HeadHash, sum.PublicKey)
		if pin == nil {
			fmt.Fprint(env.Stdout, " (not pinned: pass -pubkey to check who signed)")
		}
		fmt.Fprintln(env.Stdout)
	}
	if *report == "" {
		return verifyAnchorsOn(ctx, env, *nodeURL, *chainFile, nil, log, nil)
	}
	rb, err := readBounded(*report)
	if err != nil {
		return err
	}
	var hb []byte
	if *html != "" {
		if hb, err = readBounded(*html); err != nil {
			return err
		}
	}
	chk, err := registry.VerifyReportIn(rb, pin, hb, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "report ok: entry %d, site %s, %s..%s, content %s, key %x", chk.Seq, chk.Site,
		chk.From.Format(time.RFC3339), chk.To.Format(time.RFC3339), chk.ContentSHA, chk.PublicKey)
	if chk.HTMLOK {
		fmt.Fprint(env.Stdout, ", html ok")
	}
	if chk.InLog {
		fmt.Fprint(env.Stdout, ", in log")
	}
	if !chk.KeyPinned {
		fmt.Fprint(env.Stdout, " (key not pinned: pass -pubkey or -log to check who signed)")
	}
	fmt.Fprintln(env.Stdout)
	samples, err := registry.CheckSamples(rb)
	if err != nil {
		return err
	}
	printSamples(env, samples)
	if *sharesDB != "" {
		db, err := sqlite.OpenReadOnly(*sharesDB)
		if err != nil {
			return err
		}
		n, err := registry.CheckShareCommitments(ctx, db, rb)
		db.Close()
		if err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "shares ok: %d share commitments recomputed from %s\n", n, *sharesDB)
	}
	return verifyAnchorsOn(ctx, env, *nodeURL, *chainFile, rb, log, samples.Headers)
}

// printSamples says what CheckSamples checked.
func printSamples(env Env, chk registry.SampleCheck) {
	if chk.Shares > 0 || len(chk.Expect) > 0 {
		var by []string
		for _, g := range slices.Sorted(maps.Keys(chk.Expect)) {
			by = append(by, fmt.Sprintf("%s %d (about %.1f expected)", g, chk.Groups[g], chk.Expect[g]))
		}
		fmt.Fprintf(env.Stdout, "sample ok: %d shares hashed again, each meeting its difficulty and the sample target, each a leaf of its group's share root; %s\n",
			chk.Shares, strings.Join(by, ", "))
	}
	if chk.Unsampled > 0 {
		fmt.Fprintf(env.Stdout, "%d share commitments carry no sample: the pool kept no headers then\n", chk.Unsampled)
	}
}

// verifyAnchorsOn checks anchors when -node or -chain is given.
func verifyAnchorsOn(ctx context.Context, env Env, nodeURL, chainFile string, report []byte, log *registry.Log, sampled []registry.SampledHeader) error {
	if nodeURL == "" && chainFile == "" {
		return nil
	}
	if nodeURL != "" && chainFile != "" {
		return fmt.Errorf("%w: -node and -chain: give one", ErrUsage)
	}
	chain, closeChain, err := openAnchorChain(nodeURL, chainFile)
	if err != nil {
		return err
	}
	defer closeChain()
	if err := verifyAnchors(ctx, env, chain, report, log); err != nil {
		return err
	}
	return checkSampledChain(ctx, env, chain, sampled)
}
