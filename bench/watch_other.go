//go:build !linux

package bench

import (
	"bufio"
	"errors"
	"sync"
	"time"
)

// watch reads every connection on a goroutine of its own until stop is closed,
// calling clean(i, t) when connection i receives a clean notify at t (UnixNano), and
// opt.registered once the goroutines are started. The
// options are Linux's (kernel receive times, settling readers): elsewhere each line is
// dated when its goroutine reads it.
func watch(conns []*conn, opt watchOptions, stop <-chan struct{}, clean func(i int, t int64)) error {
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() {
			for {
				line, err := c.br.ReadSlice('\n')
				if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
					return
				}
				if isCleanNotify(line) {
					clean(i, time.Now().UnixNano())
				}
			}
		})
	}
	if opt.registered != nil {
		opt.registered()
	}
	<-stop
	for _, c := range conns {
		c.nc.Close()
	}
	wg.Wait()
	return nil
}
