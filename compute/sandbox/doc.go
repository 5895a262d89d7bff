// Package sandbox runs a tenant's WebAssembly job (a wasip1 module) in a child process
// of the hashgrid binary, with the resources leased and no more, and meters what the
// job used from the operating system.
//
// Why a child process: the provider's agent measures delivery (CPU-seconds and memory
// held) from /proc and rusage, not from anything the job or the runtime declares, and
// a child is the unit the kernel meters, limits (RLIMIT_CPU) and kills. The parent
// starts `<Runner.Exe> <Runner.Args...>` (the hidden `hashgrid sandbox-exec`
// subcommand, or a test binary with an environment switch), writes the Spec to its
// standard input (a JSON header, then the module and inputs raw) and reads one JSON
// Result from its standard output. ChildMain is the child side.
//
// Inside the child the module runs in wazero (github.com/tetratelabs/wazero), an
// embedded runtime with no cgo, which gives a module nothing it is not handed:
//
//   - file system: only Spec.Inputs, mounted read-only at /in; no other path exists;
//   - network: none: no socket is preopened, and wasip1 cannot create one (Go's own
//     net package on wasip1 answers Dial and Listen from an in-process fake network);
//   - environment: none; clocks and random numbers are wazero's deterministic ones, so
//     two providers running the same module on the same inputs print the same bytes;
//   - memory: linear memory may not grow past Spec.MemoryLimit;
//   - CPU: RLIMIT_CPU set in the child after compiling, so the job gets CPULimit of
//     CPU time on top of what compiling took, rounded up to a whole second; the kernel
//     kills the child there and the parent reports StopCPU;
//   - wall time: the parent kills the child at Spec.Timeout or when its context ends;
//   - output: standard output and standard error are each cut at Spec.MaxOutput, and a
//     module that writes more is stopped at that write.
//
// Why a Result says why a job stopped: the lease market pays for work done and must
// tell a tenant's own failure (a non-zero exit, a trap) from a limit of the lease
// (memory, CPU, wall time, output) and from the provider ending it (killed). Err is
// empty when the module ran to its own end, and otherwise begins with one of the
// Stop* reasons; a module that exits non-zero or traps after a memory grow was
// refused is StopMemory, with its exit code kept.
//
// A service (Runner.Serve, serve.go) is the same child and the same limits, with
// the module started once and kept running: requests go to its standard input and
// responses come from its standard output, each framed as a 4-byte big-endian length
// and that many bytes, and it is metered from /proc the same way while it runs.
//
// What it leaves out: OCI images (package compute/oci runs those, under runc, with
// cgroups) and other runtimes; GPUs; cgroups (the kernel's
// per-process limits and /proc suffice for one job per child, and cgroups need
// privileges a provider may not have); a module's partial output when the child is
// killed (a killed child reports nothing, so only Usage survives it); streaming of
// output while a job runs (a service answers whole responses only). It is Linux
// only: /proc and RLIMIT_CPU are what meter and limit the child.
package sandbox
