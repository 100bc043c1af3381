/**
 * The seccomp profile tenant containers run with, inside gVisor (runsc `--oci-seccomp`). An allow-by-default list
 * that denies the syscalls a sandboxed web app or build never needs and an attacker reaches for first: tracing other
 * processes, namespaces and mounts, kernel keyrings and modules, BPF and perf, userfaultfd and io_uring (the
 * usual exploit primitives), clock and reboot control.
 *
 * Why not podman's default profile: with runsc 20221219 it makes `select(2)` fail with EPERM inside the sandbox
 * (gunicorn's arbiter dies at start; measured), so a deny list is what works here. gVisor itself still applies its
 * own host-side filter underneath; this one narrows what the sandboxed kernel accepts from the tenant.
 *
 * Not covered: `clone`/`clone3` with CLONE_NEW* flags. Tried (runsc 20221219): argument filters on `clone` made
 * every thread start fail, and runsc ignores `errnoRet` (a denied `clone3` answers EPERM, so glibc does not fall
 * back to `clone`). Namespaces made that way live inside gVisor's own kernel, not the host's; `unshare`/`setns` are
 * denied.
 */
export const DENIED_SYSCALLS = [
  "acct",
  "add_key",
  "bpf",
  "clock_adjtime",
  "clock_settime",
  "delete_module",
  "finit_module",
  "fsconfig",
  "fsmount",
  "fsopen",
  "fspick",
  "init_module",
  "io_uring_enter",
  "io_uring_register",
  "io_uring_setup",
  "ioperm",
  "iopl",
  "kcmp",
  "kexec_file_load",
  "kexec_load",
  "keyctl",
  "lookup_dcookie",
  "mount",
  "mount_setattr",
  "move_mount",
  "name_to_handle_at",
  "open_by_handle_at",
  "open_tree",
  "perf_event_open",
  "pidfd_getfd",
  "pivot_root",
  "process_vm_readv",
  "process_vm_writev",
  "ptrace",
  "quotactl",
  "reboot",
  "request_key",
  "setns",
  "settimeofday",
  "swapoff",
  "swapon",
  "syslog",
  "umount2",
  "unshare",
  "userfaultfd",
] as const;

/** EPERM, as for a missing capability (runsc 20221219 answers EPERM whatever is asked, see above). */
const EPERM = 1;

export function seccompProfileJson(): string {
  return `${JSON.stringify(
    {
      defaultAction: "SCMP_ACT_ALLOW",
      architectures: ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_AARCH64"],
      syscalls: [{ names: [...DENIED_SYSCALLS], action: "SCMP_ACT_ERRNO", errnoRet: EPERM }],
    },
    null,
    2,
  )}\n`;
}
