package oci

import (
	"archive/tar"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Defaults of StoreConfig's limits.
const (
	DefaultMaxCompressed   = 1 << 30  // an image's layers as fetched
	DefaultMaxUncompressed = 4 << 30  // an image's flattened file system
	DefaultMaxLayers       = 64       // layers of one image
	DefaultMaxFiles        = 200_000  // entries of the flattened file system
	DefaultCacheBytes      = 20 << 30 // unpacked images kept
	DefaultFetchTimeout    = 10 * time.Minute
)

// StoreConfig configures a Store.
type StoreConfig struct {
	// Dir is where images are unpacked (Dir/images/HEX) and fetched (Dir/tmp).
	Dir string
	// InsecureHosts are the registry hosts (host or host:port) that may be reached
	// over plain HTTP; every other registry is reached over HTTPS only, loopback and
	// private addresses included.
	InsecureHosts   []string
	MaxCompressed   int64
	MaxUncompressed int64
	MaxLayers       int
	MaxFiles        int
	// CacheBytes bounds the unpacked images kept; the least recently used image not
	// in use is removed when a new one passes it.
	CacheBytes   int64
	FetchTimeout time.Duration
	Logger       *slog.Logger
}

// ImageConfig is what of an image's configuration a run uses.
type ImageConfig struct {
	Entrypoint []string `json:"entrypoint,omitempty"`
	Cmd        []string `json:"cmd,omitempty"`
	Env        []string `json:"env,omitempty"`
	WorkingDir string   `json:"working_dir,omitempty"`
	User       string   `json:"user,omitempty"`
}

// Image is an unpacked image in a Store. Release it when its runs are done, so that
// the cache may remove it.
type Image struct {
	Digest string      // the pinned digest, sha256:HEX
	Rootfs string      // the flattened file system
	Config ImageConfig // from the image's configuration
	Size   int64       // bytes of regular files unpacked

	s *Store
}

// Release says the caller no longer uses the image.
func (im *Image) Release() { im.s.release(im.Digest) }

// meta is Dir/images/HEX/image.json, written last: an image directory without it is
// a fetch that did not finish.
type meta struct {
	Digest string      `json:"digest"`
	Ref    string      `json:"ref"`
	Config ImageConfig `json:"config"`
	Size   int64       `json:"size"`
}

type entry struct {
	img  *Image
	refs int
	used time.Time
}

// Store fetches images from registries and keeps them unpacked, by digest.
type Store struct {
	cfg StoreConfig
	log *slog.Logger

	mu       sync.Mutex
	images   map[string]*entry
	fetching map[string]chan struct{} // closed when that digest's fetch ends
}

// NewStore opens (or makes) the cache in cfg.Dir, keeping the images a previous run
// finished unpacking and removing what it left half done.
func NewStore(cfg StoreConfig) (*Store, error) {
	if cfg.Dir == "" {
		return nil, errors.New("oci: store: no directory")
	}
	if cfg.MaxCompressed <= 0 {
		cfg.MaxCompressed = DefaultMaxCompressed
	}
	if cfg.MaxUncompressed <= 0 {
		cfg.MaxUncompressed = DefaultMaxUncompressed
	}
	if cfg.MaxLayers <= 0 {
		cfg.MaxLayers = DefaultMaxLayers
	}
	if cfg.MaxFiles <= 0 {
		cfg.MaxFiles = DefaultMaxFiles
	}
	if cfg.CacheBytes <= 0 {
		cfg.CacheBytes = DefaultCacheBytes
	}
	if cfg.FetchTimeout <= 0 {
		cfg.FetchTimeout = DefaultFetchTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Store{cfg: cfg, log: cfg.Logger, images: map[string]*entry{}, fetching: map[string]chan struct{}{}}
	if err := os.RemoveAll(filepath.Join(cfg.Dir, "tmp")); err != nil {
		return nil, err
	}
	for _, d := range []string{"images", "tmp"} {
		if err := os.MkdirAll(filepath.Join(cfg.Dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	des, err := os.ReadDir(filepath.Join(cfg.Dir, "images"))
	if err != nil {
		return nil, err
	}
	for _, de := range des {
		dir := filepath.Join(cfg.Dir, "images", de.Name())
		b, err := os.ReadFile(filepath.Join(dir, "image.json"))
		var m meta
		if err == nil {
			err = json.Unmarshal(b, &m)
		}
		if err != nil || m.Digest != "sha256:"+de.Name() {
			s.log.Info("removing an unfinished image", "dir", dir)
			os.RemoveAll(dir)
			continue
		}
		fi, _ := os.Stat(filepath.Join(dir, "image.json"))
		s.images[m.Digest] = &entry{img: &Image{Digest: m.Digest, Rootfs: filepath.Join(dir, "rootfs"), Config: m.Config, Size: m.Size, s: s},
			used: fi.ModTime()}
	}
	return s, nil
}

// Get returns the image ref names, fetching and unpacking it unless it is cached. ref
// must be pinned by digest (ParseRef). Concurrent calls for one digest fetch it once.
func (s *Store) Get(ctx context.Context, ref string) (*Image, error) {
	r, err := ParseRef(ref)
	if err != nil {
		return nil, err
	}
	for {
		s.mu.Lock()
		if e := s.images[r.Digest()]; e != nil {
			e.refs++
			e.used = time.Now()
			s.mu.Unlock()
			return e.img, nil
		}
		if wait := s.fetching[r.Digest()]; wait != nil {
			s.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		done := make(chan struct{})
		s.fetching[r.Digest()] = done
		s.mu.Unlock()
		img, err := s.fetch(ctx, r)
		s.mu.Lock()
		delete(s.fetching, r.Digest())
		close(done)
		if err != nil {
			s.mu.Unlock()
			return nil, err
		}
		s.images[img.Digest] = &entry{img: img, refs: 1, used: time.Now()}
		s.evictLocked()
		s.mu.Unlock()
		return img, nil
	}
}

func (s *Store) release(digest string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.images[digest]; e != nil && e.refs > 0 {
		e.refs--
		e.used = time.Now()
	}
	s.evictLocked()
}

// Cached lists the digests of the images unpacked now.
func (s *Store) Cached() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for d := range s.images {
		out = append(out, d)
	}
	slices.Sort(out)
	return out
}

// evictLocked removes the least recently used images not in use until the cache is
// within CacheBytes.
func (s *Store) evictLocked() {
	var total int64
	var idle []*entry
	for _, e := range s.images {
		total += e.img.Size
		if e.refs == 0 {
			idle = append(idle, e)
		}
	}
	sort.Slice(idle, func(i, j int) bool { return idle[i].used.Before(idle[j].used) })
	for _, e := range idle {
		if total <= s.cfg.CacheBytes {
			break
		}
		dir := filepath.Dir(e.img.Rootfs)
		if err := os.RemoveAll(dir); err != nil {
			s.log.Warn("removing a cached image", "digest", e.img.Digest, "err", err)
			continue
		}
		delete(s.images, e.img.Digest)
		total -= e.img.Size
		s.log.Info("cached image removed", "digest", e.img.Digest, "size", e.img.Size)
	}
}

// guard is the registry client's transport: it refuses plain HTTP to any host not
// listed as insecure, whatever the reference's host looks like.
type guard struct {
	next     http.RoundTripper
	insecure []string
}

func (g guard) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "https" && !slices.Contains(g.insecure, req.URL.Host) {
		return nil, fmt.Errorf("oci: plain HTTP to registry %s refused (not an insecure registry of this provider)", req.URL.Host)
	}
	return g.next.RoundTrip(req)
}

func (s *Store) transport() http.RoundTripper {
	t := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   30 * time.Second,
		ResponseHeaderTimeout: time.Minute,
		MaxIdleConnsPerHost:   4,
	}
	return guard{next: t, insecure: s.cfg.InsecureHosts}
}

// fetch pulls r's manifest and configuration (verified against the pinned digest by
// the registry client), downloads each layer to a file while hashing it and counting
// it against MaxCompressed, checks each layer's digest, and unpacks the flattened
// file system (whiteouts applied) into a new directory that becomes the cached image
// only once complete.
func (s *Store) fetch(ctx context.Context, r Ref) (*Image, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.FetchTimeout)
	defer cancel()
	start := time.Now()
	ref := r.d
	if slices.Contains(s.cfg.InsecureHosts, r.Host()) {
		// The registry client reaches only loopback and private addresses over
		// plain HTTP by itself; a listed host may be any.
		d, err := name.NewDigest(r.String(), name.StrictValidation, name.Insecure)
		if err != nil {
			return nil, err
		}
		ref = d
	}
	img, err := remote.Image(ref, remote.WithContext(ctx), remote.WithAuth(authn.Anonymous), remote.WithTransport(s.transport()),
		remote.WithPlatform(v1.Platform{OS: "linux", Architecture: runtime.GOARCH}))
	if err != nil {
		return nil, fmt.Errorf("oci: fetch %s: %w", r, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("oci: fetch %s: config: %w", r, err)
	}
	if cf.OS != "" && cf.OS != "linux" || cf.Architecture != "" && cf.Architecture != runtime.GOARCH {
		return nil, fmt.Errorf("oci: image %s is for %s/%s, this provider is linux/%s", r, cf.OS, cf.Architecture, runtime.GOARCH)
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("oci: fetch %s: %w", r, err)
	}
	if len(layers) > s.cfg.MaxLayers {
		return nil, fmt.Errorf("oci: image %s has %d layers, over %d", r, len(layers), s.cfg.MaxLayers)
	}
	var declared int64
	for _, l := range layers {
		n, err := l.Size()
		if err != nil {
			return nil, fmt.Errorf("oci: fetch %s: %w", r, err)
		}
		declared += n
	}
	if declared > s.cfg.MaxCompressed {
		return nil, fmt.Errorf("oci: image %s is %d bytes compressed, over %d", r, declared, s.cfg.MaxCompressed)
	}
	var rb [8]byte
	rand.Read(rb[:])
	tmp := filepath.Join(s.cfg.Dir, "tmp", hex.EncodeToString(rb[:]))
	if err := os.MkdirAll(filepath.Join(tmp, "layers"), 0o700); err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	budget := s.cfg.MaxCompressed
	local := make([]v1.Layer, 0, len(layers))
	for i, l := range layers {
		p := filepath.Join(tmp, "layers", fmt.Sprint(i))
		n, err := s.download(l, p, budget)
		if err != nil {
			return nil, fmt.Errorf("oci: fetch %s: layer %d: %w", r, i, err)
		}
		budget -= n
		ll, err := tarball.LayerFromFile(p)
		if err != nil {
			return nil, fmt.Errorf("oci: fetch %s: layer %d: %w", r, i, err)
		}
		local = append(local, ll)
	}
	flat, err := mutate.AppendLayers(empty.Image, local...)
	if err != nil {
		return nil, err
	}
	rootfs := filepath.Join(tmp, "image", "rootfs")
	if err := os.MkdirAll(rootfs, 0o755); err != nil {
		return nil, err
	}
	rc := mutate.Extract(flat)
	u, err := unpack(tar.NewReader(rc), rootfs, unpackLimits{bytes: s.cfg.MaxUncompressed, files: s.cfg.MaxFiles})
	if err == nil {
		// Extract ends the archive before it reports its own errors (an unsafe path
		// in a layer, say): read on to the end of the stream for them.
		_, err = io.Copy(io.Discard, rc)
	}
	rc.Close()
	if err != nil {
		return nil, fmt.Errorf("oci: unpack %s: %w", r, err)
	}
	c := cf.Config
	m := meta{Digest: r.Digest(), Ref: r.String(), Size: u.bytes,
		Config: ImageConfig{Entrypoint: c.Entrypoint, Cmd: c.Cmd, Env: c.Env, WorkingDir: c.WorkingDir, User: c.User}}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(tmp, "image", "image.json"), b, 0o600); err != nil {
		return nil, err
	}
	dir := filepath.Join(s.cfg.Dir, "images", r.Digest()[len("sha256:"):])
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	if err := os.Rename(filepath.Join(tmp, "image"), dir); err != nil {
		return nil, err
	}
	s.log.Info("image fetched", "ref", r.String(), "layers", len(layers), "compressed", s.cfg.MaxCompressed-budget, "unpacked", u.bytes,
		"files", u.files, "skipped", u.skipped, "took", time.Since(start).Round(time.Millisecond))
	return &Image{Digest: m.Digest, Rootfs: filepath.Join(dir, "rootfs"), Config: m.Config, Size: m.Size, s: s}, nil
}

// download writes layer l's compressed bytes to path, at most budget of them, and
// checks them against the layer's digest. It returns how many bytes it wrote.
func (s *Store) download(l v1.Layer, path string, budget int64) (int64, error) {
	want, err := l.Digest()
	if err != nil {
		return 0, err
	}
	if want.Algorithm != "sha256" {
		return 0, fmt.Errorf("digest algorithm %q not supported", want.Algorithm)
	}
	rc, err := l.Compressed()
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(rc, budget+1))
	if err != nil {
		return n, err
	}
	if n > budget {
		return n, fmt.Errorf("image is over %d bytes compressed", s.cfg.MaxCompressed)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want.Hex {
		return n, fmt.Errorf("layer digest mismatch: got sha256:%s, want %s", got, want)
	}
	return n, f.Close()
}
