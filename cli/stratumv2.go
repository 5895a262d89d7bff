package cli

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashgrid/hashgrid/stratum"
	"github.com/hashgrid/hashgrid/stratum/v2/bridge"
	"github.com/hashgrid/hashgrid/stratum/v2/noise"
)

// v2KeyDir is where a pool or market keeps its Stratum V2 authority key, server key
// and certificate, under its data directory: they must survive restarts, since miners
// are given the authority key in the URL.
const v2KeyDir = "v2"

// v2Port is a running Stratum V2 port: the bridge to a V1 server.
type v2Port struct {
	srv  *bridge.Server
	addr string // host:port it listens on
	url  string // stratum2+tcp://HOST:PORT/AUTHORITY_KEY
	wg   sync.WaitGroup
}

// startV2 opens the Stratum V2 port listen, with the keys of dataDir/v2 (created on
// first use), bridging to v1.
func startV2(listen, dataDir string, v1 *stratum.Server, maxConnsPerIP int, log *slog.Logger) (*v2Port, error) {
	dir := filepath.Join(dataDir, v2KeyDir)
	auth, err := noise.LoadOrCreateAuthority(dir)
	if err != nil {
		return nil, fmt.Errorf("stratum v2 keys: %w", err)
	}
	id, err := noise.LoadOrCreateIdentity(dir, auth, time.Now(), 0)
	if err != nil {
		return nil, fmt.Errorf("stratum v2 keys: %w", err)
	}
	srv, err := bridge.NewServer(v1, bridge.Config{
		Identity: id,
		Limits:   bridge.Limits{MaxConnsPerIP: maxConnsPerIP},
		Logger:   log,
	})
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("stratum v2 listen: %w", err)
	}
	p := &v2Port{srv: srv, addr: l.Addr().String()}
	p.url = noise.FormatURL(p.addr, auth.PublicKey())
	p.wg.Go(func() {
		if err := srv.Serve(l); err != nil {
			log.Error("stratum v2", "err", err, "listen", p.addr)
		}
	})
	log.Info("stratum v2 listening", "listen", p.addr, "authority_key", auth.PublicKey().String(), "url", p.url)
	return p, nil
}

// shutdown closes the port and its connections. A nil port is none.
func (p *v2Port) shutdown(ctx context.Context) {
	if p == nil {
		return
	}
	p.srv.Shutdown(ctx)
	p.wg.Wait()
}

// fields returns the port's address and URL, or empty strings for no port.
func (p *v2Port) fields() (addr, url string) {
	if p == nil {
		return "", ""
	}
	return p.addr, p.url
}
