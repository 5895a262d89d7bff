// Package oci runs a tenant's OCI image job on a provider: it fetches the image,
// pinned by digest, from a registry, unpacks it into a cache, and runs each unit as a
// container under runc with the resources leased and no more, metering what the
// container used from its cgroup.
//
// Fetching (Store): a reference must be host/repository@sha256:HEX (ParseRef), so
// that every provider and every spot check's re-run runs the same bytes. The
// manifest and configuration are checked against the digest by the registry client
// (go-containerregistry); each layer is downloaded to a file while it is hashed and
// counted, and refused unless its SHA-256 is the manifest's. Named limits bound the
// layers' count and compressed size, the unpacked size and the number of files, and
// the time a fetch may take. Registries are reached over HTTPS only, unless the
// provider lists a host as insecure (a transport guard refuses plain HTTP to any
// other, loopback included), and anonymously.
//
// Unpacking: the layers are flattened (whiteouts applied) and written into a new
// directory through an os.Root: a name with a ".." component is refused, and no
// symlink planted by one entry can lead a later one out of the root; device nodes
// and FIFOs are skipped; set-user-ID, set-group-ID and sticky bits are dropped. An
// image becomes usable only once fully unpacked (its image.json is written last), is
// kept by digest, and the least recently used images not in use are removed when the
// cache passes its size bound.
//
// Running (Runtime): each unit is `runc run` of a bundle generated here (config.go):
//
//   - command: the image's Entrypoint and Cmd, the order's arguments replacing Cmd,
//     its Env and WorkingDir; the unit's bytes on standard input;
//   - user: the image's user when it is a non-root numeric uid[:gid], else nobody
//     (65534); no capabilities in any set, no new privileges, a seccomp filter
//     refusing the syscalls that reach mounts, namespaces, modules, other processes'
//     memory and the like;
//   - file system: the image's root read-only (shared by the image's containers),
//     /proc, a minimal /dev (runc's default devices, no others allowed), a
//     size-limited tmpfs /tmp;
//   - network: a new network namespace: only a loopback of its own, nothing outside;
//   - limits: a CPU quota of the unit's cores, a memory limit (no swap), a pids
//     limit, RLIMIT_NOFILE, and optionally a CPU-time limit and a wall-time timeout;
//     standard output and standard error are each kept up to MaxOutput and a job
//     that writes more is stopped.
//
// Metering: the container runs in a leaf cgroup under a parent made here
// (hashgrid-oci/ID); counters are hierarchical, so the parent still holds the job's
// CPU time and memory peak after runc has removed the leaf. CPU time comes from
// cpuacct.usage (cgroup v1) or cpu.stat (v2), memory from memory.usage_in_bytes and
// memory.max_usage_in_bytes (v1) or memory.current and memory.peak (v2): the
// kernel's counts, never the job's word. runc's own init runs in the cgroup before
// it becomes the job, so a few milliseconds of its CPU time are counted too.
//
// A Result is compute/sandbox's, with the same reasons a unit stopped: a job that
// ran to its end has its exit code and no Err; otherwise Err starts with
// sandbox.StopMemory (killed at the memory limit), StopCPU, StopTimeout, StopOutput,
// StopKilled or StopInvalid (runc could not start the command). The container, its
// cgroups and its bundle are removed whatever happened.
//
// Discover tells whether this machine can run OCI jobs: runc is found, the process is
// root (runc makes the cgroups and namespaces), and a probe container (a tiny
// program generated here that only exits with a known status) really runs with
// every wall a job gets.
//
// What it leaves out: rootless runc and other runtimes (crun does not work with the
// hybrid cgroup layout of the machines this was written on); registry credentials
// (anonymous pulls only); images named by user name rather than uid (refused);
// inputs under /in; GPUs; under cgroup v1, an out-of-memory kill is inferred (a
// SIGKILL nobody here sent to a job whose memory peaked at its limit) because v1
// counts the kill only in the removed leaf; cgroup v2 support is written to the
// kernel's interface but the tests ran on a cgroup v1 machine; a provider killed
// with SIGKILL leaves its containers running (runc dies with it, they do not) until
// the runtime starts again on the same directory and deletes them. It is Linux
// only.
package oci
