package noise_test

import (
	"fmt"
	"net"
	"os"
	"time"

	"github.com/hashgrid/hashgrid/stratum/v2/noise"
)

// A pool keeps its keys in a directory, publishes its URL, and runs Server on each
// connection; a miner takes the URL and runs Client.
func Example() {
	dir, _ := os.MkdirTemp("", "sv2keys")
	defer os.RemoveAll(dir)
	auth, err := noise.LoadOrCreateAuthority(dir)
	if err != nil {
		panic(err)
	}
	id, err := noise.LoadOrCreateIdentity(dir, auth, time.Now(), 0)
	if err != nil {
		panic(err)
	}
	url := noise.FormatURL("127.0.0.1:34254", auth.PublicKey())

	serverSide, minerSide := net.Pipe()
	go func() {
		c, err := noise.Server(serverSide, noise.ServerConfig{Identity: id})
		if err != nil {
			serverSide.Close()
			return
		}
		h, payload, err := c.ReadFrame()
		if err != nil {
			c.Close()
			return
		}
		c.WriteFrame(h.ExtensionType, h.MsgType+1, payload)
	}()

	_, key, err := noise.ParseURL(url)
	if err != nil {
		panic(err)
	}
	c, err := noise.Client(minerSide, noise.ClientConfig{Authority: key})
	if err != nil {
		panic(err)
	}
	defer c.Close()
	c.WriteFrame(0, 0x10, []byte("ping"))
	h, payload, err := c.ReadFrame()
	fmt.Printf("%#x %s %v\n", h.MsgType, payload, err)
	// Output: 0x11 ping <nil>
}
