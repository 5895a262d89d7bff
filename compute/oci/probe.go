package oci

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"
)

// probeExit is the status the probe program exits with: a run that reports it has
// really executed a program inside a container.
const probeExit = 42

// probeProgram is a complete static Linux executable for this machine's architecture
// that exits with probeExit and does nothing else: one ELF header, one loadable
// segment, three instructions. It lets Probe run a real container without shipping
// or building an image.
func probeProgram() ([]byte, error) {
	var code []byte
	switch runtime.GOARCH {
	case "amd64":
		code = []byte{
			0xbf, probeExit, 0, 0, 0, // mov edi, 42
			0xb8, 60, 0, 0, 0, // mov eax, 60 (exit)
			0x0f, 0x05, // syscall
		}
	case "arm64":
		code = binary.LittleEndian.AppendUint32(nil, 0xd2800000|probeExit<<5) // mov x0, #42
		code = binary.LittleEndian.AppendUint32(code, 0xd2800ba8)             // mov x8, #93 (exit)
		code = binary.LittleEndian.AppendUint32(code, 0xd4000001)             // svc #0
	default:
		return nil, fmt.Errorf("oci: no probe program for %s", runtime.GOARCH)
	}
	return elfProgram(code)
}

// elfProgram wraps machine code for this architecture in a static executable.
func elfProgram(code []byte) ([]byte, error) {
	var machine uint16
	switch runtime.GOARCH {
	case "amd64":
		machine = 62 // EM_X86_64
	case "arm64":
		machine = 183 // EM_AARCH64
	default:
		return nil, fmt.Errorf("oci: no executables for %s", runtime.GOARCH)
	}
	const base, ehsize, phsize = 0x400000, 64, 56
	le := binary.LittleEndian
	b := []byte{0x7f, 'E', 'L', 'F', 2 /* 64-bit */, 1 /* little-endian */, 1 /* version */, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	b = le.AppendUint16(b, 2) // ET_EXEC
	b = le.AppendUint16(b, machine)
	b = le.AppendUint32(b, 1)                  // version
	b = le.AppendUint64(b, base+ehsize+phsize) // entry
	b = le.AppendUint64(b, ehsize)             // program headers' offset
	b = le.AppendUint64(b, 0)                  // section headers' offset: none
	b = le.AppendUint32(b, 0)                  // flags
	b = le.AppendUint16(b, ehsize)
	b = le.AppendUint16(b, phsize)
	b = le.AppendUint16(b, 1) // one program header
	b = le.AppendUint16(b, 64)
	b = le.AppendUint16(b, 0)
	b = le.AppendUint16(b, 0)
	size := uint64(ehsize + phsize + len(code))
	b = le.AppendUint32(b, 1)    // PT_LOAD
	b = le.AppendUint32(b, 5)    // PF_R | PF_X
	b = le.AppendUint64(b, 0)    // offset
	b = le.AppendUint64(b, base) // vaddr
	b = le.AppendUint64(b, base) // paddr
	b = le.AppendUint64(b, size) // file size
	b = le.AppendUint64(b, size) // memory size
	b = le.AppendUint64(b, 4096) // alignment
	return append(b, code...), nil
}

// Probe runs a real container, with every limit and wall a job gets, around a
// program that only exits with a known status; it answers nil when that status came
// back and the container's CPU time was metered from its cgroup. A provider offers
// OCI jobs only after Probe has answered nil.
func (rt *Runtime) Probe(ctx context.Context) error {
	prog, err := probeProgram()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp(rt.dir, "probe-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	rootfs := filepath.Join(dir, "rootfs")
	for _, d := range []string{"proc", "dev", "tmp"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(rootfs, "tmp"), 0o777|os.ModeSticky); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(rootfs, "probe"), prog, 0o755); err != nil {
		return err
	}
	im := &Image{Digest: "probe", Rootfs: rootfs, Config: ImageConfig{Entrypoint: []string{"/probe"}}}
	p, err := rt.Start(ctx, im, Spec{Cores: 1, Memory: 64 << 20, Timeout: 30 * time.Second})
	if err != nil {
		return fmt.Errorf("oci: probe: %w", err)
	}
	res := p.Wait()
	if res.Err != "" || res.ExitCode != probeExit {
		return fmt.Errorf("oci: probe container: exit %d, %s %s", res.ExitCode, res.Err, res.Stderr)
	}
	return nil
}

// Discover answers a Runtime when this machine can run OCI jobs: runc is there, this
// process may use it, and a probe container actually runs. dir holds runc's state
// and the containers' bundles.
func Discover(ctx context.Context, dir string) (*Runtime, error) {
	rt, err := NewRuntime(RuntimeConfig{Dir: dir})
	if err != nil {
		return nil, err
	}
	if err := rt.Probe(ctx); err != nil {
		return nil, err
	}
	return rt, nil
}
