package cli

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hashgrid/hashgrid/compute"
	"github.com/hashgrid/hashgrid/compute/model"
	"github.com/hashgrid/hashgrid/compute/model/wasm"
)

// computeCommand is `hashgrid compute`: the tenant's side of compute leasing. It
// submits jobs to a market's compute book, follows them, fetches and checks their
// outputs; `hashgrid compute example` writes the digit classifier hashgrid ships and
// work units for it, so a newcomer has a real job to run.
func computeCommand() *Command {
	return &Command{
		Name:  "compute",
		Short: "lease compute from a market: submit jobs, follow them, fetch and check their outputs",
		Run: func(ctx context.Context, args []string, env Env) error {
			if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
				io.WriteString(env.Stderr, computeUsage)
				if len(args) == 0 {
					return fmt.Errorf("%w: no subcommand", ErrUsage)
				}
				return nil
			}
			sub, rest := args[0], args[1:]
			switch sub {
			case "example":
				return runComputeExample(rest, env)
			case "score":
				return runComputeScore(rest, env)
			case "offers", "submit", "status", "log", "outputs", "accept", "cancel", "request":
				return runComputeTenant(ctx, sub, rest, env)
			}
			return fmt.Errorf("%w: hashgrid compute: unknown subcommand %q (example, score, offers, submit, status, log, outputs, accept, cancel, request)", ErrUsage, sub)
		},
	}
}

const computeUsage = `usage: hashgrid compute SUBCOMMAND [flags]   (each takes -h)

  example   write the digit classifier (digits.wasm) and labelled work units for it
  score     compare a digits job's outputs with its units' labels
  offers    list the providers' offers
  submit    submit a job (a module or an image, and its units; --wait follows it, --outputs
            fetches them) or a long-running service (--service)
  status    an order, its leases and what they metered and were charged
  log       an order's events
  outputs   write an order's outputs to a directory
  accept    lease an order to an offer (after submit --manual)
  cancel    stop an order's leases and refund the rest of its escrow
  request   send a request to a running service (submit --service) and print its answer
`

// Limits of what `hashgrid compute example` writes.
const (
	maxExampleUnits   = 256
	maxExamplePerUnit = 1000
)

// runComputeExample writes digits.wasm (compute/model/wasm) and units of held-out
// digits, each line labelled with its class so that `hashgrid compute score` can tell
// how many the job got right.
func runComputeExample(args []string, env Env) error {
	fs := newFlagSet("compute example", env)
	dir := fs.String("dir", "digits", "directory to write digits.wasm and units/*.txt into")
	units := fs.Int("units", 8, "work units to write")
	per := fs.Int("per-unit", 50, "digits in each unit")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	held := model.HeldOut()
	switch {
	case *units < 1 || *units > maxExampleUnits:
		return fmt.Errorf("%w: --units out of range 1..%d", ErrUsage, maxExampleUnits)
	case *per < 1 || *per > maxExamplePerUnit:
		return fmt.Errorf("%w: --per-unit out of range 1..%d", ErrUsage, maxExamplePerUnit)
	case *units**per > len(held):
		return fmt.Errorf("%w: %d units of %d digits is more than the %d held-out digits", ErrUsage, *units, *per, len(held))
	}
	if err := os.MkdirAll(filepath.Join(*dir, "units"), 0o755); err != nil {
		return fmt.Errorf("compute example: %w", err)
	}
	if err := os.WriteFile(filepath.Join(*dir, "digits.wasm"), wasm.Digits, 0o644); err != nil {
		return fmt.Errorf("compute example: %w", err)
	}
	for u := range *units {
		var b bytes.Buffer
		for i := range held[u**per : (u+1)**per] {
			model.FormatExample(&b, &held[u**per+i])
		}
		if err := os.WriteFile(filepath.Join(*dir, "units", fmt.Sprintf("%03d.txt", u)), b.Bytes(), 0o644); err != nil {
			return fmt.Errorf("compute example: %w", err)
		}
	}
	fmt.Fprintf(env.Stdout, "wrote %s (%d bytes) and %d units of %d digits in %s\n",
		filepath.Join(*dir, "digits.wasm"), len(wasm.Digits), *units, *per, filepath.Join(*dir, "units"))
	return nil
}

// unitFiles expands a glob into the job's unit files, sorted: a unit's index in the
// order is its place in this list, and outputs are written under that index.
func unitFiles(glob string) ([]string, error) {
	files, err := filepath.Glob(glob)
	if err != nil {
		return nil, fmt.Errorf("%w: --units %q: %v", ErrUsage, glob, err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%w: --units %q matches no file", ErrUsage, glob)
	}
	if len(files) > compute.MaxUnits {
		return nil, fmt.Errorf("%w: --units matches %d files; an order holds at most %d", ErrUsage, len(files), compute.MaxUnits)
	}
	slices.Sort(files)
	return files, nil
}

// outputName is where `outputs` and `submit --outputs` write unit i's standard output.
func outputName(dir string, i int) string { return filepath.Join(dir, fmt.Sprintf("%04d.out", i)) }

// runComputeScore compares a digits job's outputs with the labels of its units: each
// output line's first field is the predicted class, each unit line's 65th the class.
func runComputeScore(args []string, env Env) error {
	fs := newFlagSet("compute score", env)
	unitsGlob := fs.String("units", "digits/units/*.txt", "the job's unit files (labelled digits), as given to submit")
	outDir := fs.String("outputs", "outputs", "directory the outputs were written to (submit --outputs or outputs --dir)")
	minAcc := fs.Float64("min-accuracy", 0, "fail unless at least this share of digits is right (0..1)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	files, err := unitFiles(*unitsGlob)
	if err != nil {
		return err
	}
	right, total := 0, 0
	for i, f := range files {
		labels, err := unitLabels(f)
		if err != nil {
			return err
		}
		preds, err := outputClasses(outputName(*outDir, i))
		if err != nil {
			return err
		}
		if len(preds) != len(labels) {
			return fmt.Errorf("compute score: unit %d (%s): %d digits, %d answers", i, f, len(labels), len(preds))
		}
		for j := range labels {
			if preds[j] == labels[j] {
				right++
			}
		}
		total += len(labels)
	}
	acc := float64(right) / float64(total)
	fmt.Fprintf(env.Stdout, "%d of %d digits right (%.2f%%) in %d units\n", right, total, 100*acc, len(files))
	if acc < *minAcc {
		return fmt.Errorf("compute score: accuracy %.4f below --min-accuracy %.4f", acc, *minAcc)
	}
	return nil
}

func unitLabels(path string) ([]int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("compute score: %w", err)
	}
	defer f.Close()
	var labels []int
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, model.MaxLine), model.MaxLine)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		_, label, err := model.ParseDigit(sc.Text())
		if err != nil {
			return nil, fmt.Errorf("compute score: %s line %d: %w", path, len(labels)+1, err)
		}
		if label < 0 {
			return nil, fmt.Errorf("compute score: %s line %d: no label (65th field)", path, len(labels)+1)
		}
		labels = append(labels, label)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("compute score: %s: %w", path, err)
	}
	return labels, nil
}

func outputClasses(path string) ([]int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("compute score: %w (fetch the outputs first: hashgrid compute outputs)", err)
	}
	var out []int
	for n, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		first, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		c, err := strconv.Atoi(first)
		if err != nil {
			return nil, fmt.Errorf("compute score: %s line %d: %q is not a class", path, n+1, first)
		}
		out = append(out, c)
	}
	return out, nil
}

// tenantFlags are the flags every tenant subcommand takes.
type tenantFlags struct {
	market, keyFile *string
}

func addTenantFlags(fs *flag.FlagSet) tenantFlags {
	return tenantFlags{
		market:  fs.String("market", "http://127.0.0.1:8081", "the market's API base URL"),
		keyFile: fs.String("key", "", "file holding your market API key (or $"+envMarketAPIKey+")"),
	}
}

func (f tenantFlags) client(env Env, needKey bool) (*compute.Client, error) {
	c := &compute.Client{Base: strings.TrimRight(*f.market, "/"), HTTP: &http.Client{Timeout: time.Minute}}
	if !needKey {
		return c, nil
	}
	key, err := marketKey(*f.keyFile, "your market API key", env)
	if err != nil {
		return nil, err
	}
	c.Key = key
	return c, nil
}

func runComputeTenant(ctx context.Context, sub string, args []string, env Env) error {
	fs := newFlagSet("compute "+sub, env)
	tf := addTenantFlags(fs)
	var (
		id, provider, module, image, unitsGlob, outDir *string
		cores                                          *int
		memMiB                                         *uint64
		maxPrice, maxMemPrice, budget                  *int64
		manual, noVerify, service                      *bool
		bodyFile                                       *string
		wait                                           *time.Duration
		jobArgs                                        stringList
	)
	if sub != "offers" && sub != "submit" {
		id = fs.String("id", "", "the order's id (printed by submit)")
	}
	switch sub {
	case "submit":
		module = fs.String("module", "", "the job's WebAssembly (wasip1) module")
		image = fs.String("image", "", "instead of --module: an OCI image, HOST/REPOSITORY@sha256:HEX (pinned by digest), run by providers offering the oci runtime")
		fs.Var(&jobArgs, "arg", "an argument passed to the module (for an image: replacing its Cmd; repeat for more)")
		unitsGlob = fs.String("units", "", "the work units' files (a glob, sorted: each file is one unit, on the module's standard input)")
		cores = fs.Int("cores", 1, "cores the job leases")
		memMiB = fs.Uint64("memory-mib", 64, "memory the job leases, MiB")
		maxPrice = fs.Int64("max-price", 0, "the most you pay, sat per core-hour of CPU time")
		maxMemPrice = fs.Int64("max-mem-price", 0, "the most you pay, sat per GiB-hour of memory held")
		budget = fs.Int64("budget", 0, "sat moved from your balance into the order's escrow; what is not charged returns")
		provider = fs.String("provider", "", "accept this provider's offer (default: the cheapest that fits)")
		manual = fs.Bool("manual", false, "wait for `hashgrid compute accept` instead of taking the cheapest offer")
		noVerify = fs.Bool("no-verify", false, "the job is not deterministic: no unit is re-run on another provider")
		service = fs.Bool("service", false, "a long-running service instead of a job: the module is started once and answers `hashgrid compute request` until cancelled or its budget is spent (no --units)")
		wait = fs.Duration("wait", 0, "follow the order until its money is settled (a service: until it runs), at most this long (0: return at once)")
		outDir = fs.String("outputs", "", "with --wait: write each unit's standard output to DIR/NNNN.out")
	case "accept":
		provider = fs.String("provider", "", "the provider whose offer to accept (default: the cheapest that fits)")
	case "outputs":
		outDir = fs.String("dir", "outputs", "directory to write each unit's standard output to, as NNNN.out")
	case "request":
		bodyFile = fs.String("file", "-", "the request's body: a file, or - for standard input")
		wait = fs.Duration("wait", time.Minute, "how long to wait for the answer")
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if id != nil && *id == "" {
		return fmt.Errorf("%w: give --id", ErrUsage)
	}
	c, err := tf.client(env, sub != "offers")
	if err != nil {
		return err
	}
	switch sub {
	case "offers":
		offers, err := c.Offers(ctx)
		if err != nil {
			return err
		}
		printOffers(env, offers)
		return nil
	case "submit":
		req, err := orderRequest(*module, *image, *unitsGlob, jobArgs, *cores, *memMiB, *maxPrice, *maxMemPrice, *budget, *provider, *manual, *noVerify, *service)
		if err != nil {
			return err
		}
		if *service {
			if *outDir != "" {
				return fmt.Errorf("%w: a service has no outputs: send it requests with hashgrid compute request", ErrUsage)
			}
			v, err := c.PlaceOrder(ctx, req)
			if err != nil {
				return err
			}
			fmt.Fprintf(env.Stdout, "service %s: %s, budget %d sat\n", v.ID, v.Status, v.Budget)
			if *wait == 0 {
				return nil
			}
			return waitService(ctx, c, v.ID, *wait, env)
		}
		if *outDir != "" && *wait == 0 {
			return fmt.Errorf("%w: --outputs needs --wait", ErrUsage)
		}
		v, err := c.PlaceOrder(ctx, req)
		if err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "order %s: %s, %d units, budget %d sat\n", v.ID, v.Status, v.Units, v.Budget)
		if *wait == 0 {
			return nil
		}
		return followOrder(ctx, c, v.ID, *wait, *outDir, env)
	case "status":
		v, err := c.Order(ctx, *id)
		if err != nil {
			return err
		}
		printOrder(env, v)
		return nil
	case "log":
		lines, err := c.Log(ctx, *id)
		if err != nil {
			return err
		}
		for _, l := range lines {
			fmt.Fprintln(env.Stdout, l)
		}
		return nil
	case "outputs":
		return writeOutputs(ctx, c, *id, *outDir, env)
	case "accept":
		v, err := c.Accept(ctx, *id, *provider)
		if err != nil {
			return err
		}
		printOrder(env, v)
		return nil
	case "request":
		return serviceRequest(ctx, c, *id, *bodyFile, *wait, env)
	case "cancel":
		v, err := c.Cancel(ctx, *id)
		if err != nil {
			return err
		}
		printOrder(env, v)
		return nil
	}
	return nil
}

// stringList is a flag that may be repeated.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, " ") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func orderRequest(module, image, unitsGlob string, args []string, cores int, memMiB uint64, maxPrice, maxMemPrice, budget int64,
	provider string, manual, noVerify, service bool) (compute.OrderRequest, error) {
	if (module == "") == (image == "") {
		return compute.OrderRequest{}, fmt.Errorf("%w: give --module FILE (hashgrid compute example writes one) or --image REF, one of them", ErrUsage)
	}
	if service && unitsGlob != "" {
		return compute.OrderRequest{}, fmt.Errorf("%w: a service takes no --units: send it requests once it runs", ErrUsage)
	}
	if !service && unitsGlob == "" {
		return compute.OrderRequest{}, fmt.Errorf("%w: give --units GLOB", ErrUsage)
	}
	var mod []byte
	if module != "" {
		fi, err := os.Stat(module)
		if err != nil {
			return compute.OrderRequest{}, fmt.Errorf("compute submit: %w", err)
		}
		if fi.Size() > compute.MaxModuleBytes {
			return compute.OrderRequest{}, fmt.Errorf("compute submit: %s is %d bytes; a module may have at most %d", module, fi.Size(), compute.MaxModuleBytes)
		}
		if mod, err = os.ReadFile(module); err != nil {
			return compute.OrderRequest{}, fmt.Errorf("compute submit: %w", err)
		}
	}
	req := compute.OrderRequest{Module: mod, Image: image, Args: args, Cores: cores, Memory: memMiB << 20,
		MaxPrice: maxPrice, MaxMemPrice: maxMemPrice, Budget: budget, Provider: provider, Manual: manual, NoVerify: noVerify}
	if service {
		req.Kind = compute.KindService
		return req, nil
	}
	files, err := unitFiles(unitsGlob)
	if err != nil {
		return compute.OrderRequest{}, err
	}
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			return compute.OrderRequest{}, fmt.Errorf("compute submit: %w", err)
		}
		if fi.Size() > compute.MaxUnitBytes {
			return compute.OrderRequest{}, fmt.Errorf("compute submit: unit %s is %d bytes; a unit may have at most %d", f, fi.Size(), compute.MaxUnitBytes)
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return compute.OrderRequest{}, fmt.Errorf("compute submit: %w", err)
		}
		req.Units = append(req.Units, b)
	}
	return req, nil
}

// followOrder prints an order's new log lines until its money is settled (Closed),
// then its summary, and writes its outputs to outDir when one is given.
func followOrder(ctx context.Context, c *compute.Client, id string, wait time.Duration, outDir string, env Env) error {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	seen := 0
	for {
		v, err := c.Order(ctx, id)
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("compute submit: order %s not settled after %s (follow it: hashgrid compute status --id %s)", id, wait, id)
			}
			return err
		}
		if lines, err := c.Log(ctx, id); err == nil {
			if seen > len(lines) { // the log keeps its last lines only
				seen = 0
			}
			for _, l := range lines[seen:] {
				fmt.Fprintln(env.Stdout, l)
			}
			seen = len(lines)
		}
		if v.Closed {
			printOrder(env, v)
			if outDir != "" {
				if err := writeOutputs(ctx, c, id, outDir, env); err != nil {
					return err
				}
			}
			if v.Status != compute.OrderDone {
				return fmt.Errorf("compute submit: order %s ended %s: %s", id, v.Status, v.Reason)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("compute submit: order %s not settled after %s (now %s; follow it: hashgrid compute status --id %s)", id, wait, v.Status, id)
		case <-time.After(time.Second):
		}
	}
}

// writeOutputs writes each done unit's standard output to DIR/NNNN.out (and its
// standard error, when there is any, to NNNN.err), and says which units have none.
func writeOutputs(ctx context.Context, c *compute.Client, id, dir string, env Env) error {
	outs, err := c.Outputs(ctx, id)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("compute outputs: %w", err)
	}
	var missing []string
	done, checked := 0, 0
	for _, o := range outs {
		if !o.Done {
			missing = append(missing, strconv.Itoa(o.Unit))
			continue
		}
		done++
		if o.Checked {
			checked++
		}
		if err := os.WriteFile(outputName(dir, o.Unit), o.Stdout, 0o644); err != nil {
			return fmt.Errorf("compute outputs: %w", err)
		}
		if len(o.Stderr) > 0 || o.Err != "" || o.ExitCode != 0 {
			msg := fmt.Sprintf("exit code %d %s\n%s", o.ExitCode, o.Err, o.Stderr)
			if err := os.WriteFile(strings.TrimSuffix(outputName(dir, o.Unit), ".out")+".err", []byte(msg), 0o644); err != nil {
				return fmt.Errorf("compute outputs: %w", err)
			}
		}
	}
	fmt.Fprintf(env.Stdout, "wrote %d of %d units' outputs to %s (%d confirmed by a spot check)\n", done, len(outs), dir, checked)
	if len(missing) > 0 {
		return fmt.Errorf("compute outputs: units without outputs: %s", strings.Join(missing, " "))
	}
	return nil
}

func printOffers(env Env, offers []compute.Offer) {
	if len(offers) == 0 {
		fmt.Fprintln(env.Stdout, "no offers")
		return
	}
	tw := tabwriter.NewWriter(env.Stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "PROVIDER\tNAME\tCORES\tFREE\tMEMORY MiB\tFREE MiB\tSAT/CORE-H\tSAT/GiB-H")
	for _, o := range offers {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\n", o.Provider, o.Name, o.Resources.Cores, o.Free.Cores,
			o.Resources.Memory>>20, o.Free.Memory>>20, o.Price, o.MemPrice)
	}
	tw.Flush()
}

func printOrder(env Env, v compute.OrderView) {
	fmt.Fprintf(env.Stdout, "order %s: %s", v.ID, v.Status)
	if v.Reason != "" {
		fmt.Fprintf(env.Stdout, " (%s)", v.Reason)
	}
	fmt.Fprintf(env.Stdout, "; %d of %d units done, %d checked; verdict %q; budget %d sat, charged %d, refunded %d; settled %t\n",
		v.Done, v.Units, v.Checked, v.Verdict, v.Budget, v.Charged, v.Refunded, v.Closed)
	tw := tabwriter.NewWriter(env.Stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "LEASE\tPROVIDER\tKIND\tSTATUS\tUNITS\tCPU\tWALL\tCHARGED\tSETTLED")
	for _, l := range v.Leases {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%s\t%s\t%d\t%s\n", l.ID, l.Provider, l.Kind, l.Status, l.Done, l.Units,
			time.Duration(l.CPUMS)*time.Millisecond, time.Duration(l.WallMS)*time.Millisecond, l.Charged, l.Settled)
	}
	tw.Flush()
}

// waitService waits until a service order's module runs at a provider.
func waitService(ctx context.Context, c *compute.Client, id string, wait time.Duration, env Env) error {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		v, err := c.Order(ctx, id)
		if err == nil && v.Service != nil {
			switch v.Service.State {
			case compute.ServiceRunning:
				fmt.Fprintf(env.Stdout, "service %s running (send requests: hashgrid compute request --id %s)\n", id, id)
				return nil
			case compute.ServiceStopped:
				return fmt.Errorf("compute submit: service %s stopped: %s", id, v.Service.Reason)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("compute submit: service %s not running after %s (follow it: hashgrid compute status --id %s)", id, wait, id)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// serviceRequest sends one request to a service and prints its answer.
func serviceRequest(ctx context.Context, c *compute.Client, id, file string, wait time.Duration, env Env) error {
	var body []byte
	var err error
	if file == "-" {
		if env.Stdin == nil {
			return fmt.Errorf("%w: no standard input: give --file", ErrUsage)
		}
		body, err = io.ReadAll(io.LimitReader(env.Stdin, compute.MaxRequestBytes+1))
	} else {
		body, err = readCapped(file, compute.MaxRequestBytes+1)
	}
	if err != nil {
		return fmt.Errorf("compute request: %w", err)
	}
	if len(body) > compute.MaxRequestBytes {
		return fmt.Errorf("compute request: the body is over %d bytes", compute.MaxRequestBytes)
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	v, err := c.Request(ctx, id, body, min(wait, compute.MaxWait))
	for err == nil && (v.Status == compute.RequestQueued || v.Status == compute.RequestDelivered) {
		v, err = c.RequestStatus(ctx, id, v.ID, compute.MaxWait)
	}
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("compute request: no answer within %s", wait)
		}
		return err
	}
	if v.Status == compute.RequestFailed {
		return fmt.Errorf("compute request %s failed: %s", v.ID, v.Err)
	}
	env.Stdout.Write(v.Response)
	return nil
}

// readCapped reads at most n bytes of a file.
func readCapped(path string, n int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, n))
}
