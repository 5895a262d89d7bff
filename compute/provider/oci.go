package provider

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/hashgrid/hashgrid/compute"
	"github.com/hashgrid/hashgrid/compute/oci"
	"github.com/hashgrid/hashgrid/compute/sandbox"
)

// OCI is what a provider needs to run image units: the runtime and the store that
// fetches and caches images.
type OCI struct {
	Runtime *oci.Runtime
	Images  *oci.Store
}

// OCIConfig configures DiscoverOCI.
type OCIConfig struct {
	// Dir holds the image cache (Dir/images) and runc's state and bundles (Dir/run).
	Dir string
	// InsecureRegistries may be reached over plain HTTP (host or host:port).
	InsecureRegistries []string
	// CacheBytes bounds the unpacked images kept; 0: oci.DefaultCacheBytes.
	CacheBytes int64
	Logger     *slog.Logger
}

// DiscoverOCI answers whether this machine can run OCI jobs: runc is installed,
// this process may run it, and a probe container, with every wall a job gets,
// actually runs (oci.Discover). The error says why not; a provider then offers
// WebAssembly only.
func DiscoverOCI(ctx context.Context, cfg OCIConfig) (*OCI, error) {
	if cfg.Dir == "" {
		return nil, fmt.Errorf("provider: OCI: no directory")
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	rt, err := oci.Discover(ctx, filepath.Join(cfg.Dir, "run"))
	if err != nil {
		return nil, err
	}
	st, err := oci.NewStore(oci.StoreConfig{Dir: filepath.Join(cfg.Dir, "images"), InsecureHosts: cfg.InsecureRegistries,
		CacheBytes: cfg.CacheBytes, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	return &OCI{Runtime: rt, Images: st}, nil
}

// runImageUnit runs one unit of an image job in a container: the image fetched (or
// taken from the cache), the unit's bytes on standard input, the unit's share of the
// lease's cores and memory as the container's limits, metered from its cgroup while
// it runs.
func (a *Agent) runImageUnit(ctx context.Context, w compute.LeaseWork, u, cores int, mem uint64, m *meter) compute.UnitResult {
	res := compute.UnitResult{Unit: u, ExitCode: -1}
	if a.cfg.OCI == nil {
		res.Err = sandbox.StopInvalid + ": this provider does not run OCI images"
		return res
	}
	im, err := a.cfg.OCI.Images.Get(ctx, w.Image)
	if err != nil {
		res.Err = sandbox.StopInvalid + ": " + err.Error()
		return res
	}
	defer im.Release()
	p, err := a.cfg.OCI.Runtime.Start(ctx, im, oci.Spec{Args: w.Args, Stdin: w.Units[u], Cores: cores, Memory: mem,
		Timeout: time.Duration(w.UnitTimeoutMS) * time.Millisecond, MaxOutput: compute.MaxOutputBytes})
	if err != nil {
		res.Err = sandbox.StopInvalid + ": " + err.Error()
		return res
	}
	m.mu.Lock()
	m.live[p] = true
	m.mu.Unlock()
	r := p.Wait()
	m.mu.Lock()
	delete(m.live, p)
	m.done += r.Usage.CPU
	m.mu.Unlock()
	res.Stdout, res.Stderr, res.ExitCode, res.Err = r.Stdout, r.Stderr, r.ExitCode, r.Err
	return res
}
