import { describe, expect, it } from "vitest";
import { DENIED_SYSCALLS, seccompProfileJson } from "../../src/infra/seccomp-profile.ts";

describe("seccomp profile", () => {
  const profile = JSON.parse(seccompProfileJson()) as {
    defaultAction: string;
    syscalls: Array<{ names: string[]; action: string; errnoRet: number }>;
  };

  it("denies the classic escape primitives with EPERM and allows the rest", () => {
    expect(profile.defaultAction).toBe("SCMP_ACT_ALLOW");
    expect(profile.syscalls).toEqual([{ names: [...DENIED_SYSCALLS], action: "SCMP_ACT_ERRNO", errnoRet: 1 }]);
    for (const name of ["ptrace", "unshare", "setns", "mount", "bpf", "keyctl", "userfaultfd", "io_uring_setup"]) {
      expect(DENIED_SYSCALLS).toContain(name);
    }
  });

  // select(2) broke under podman's default profile; clone/clone3 rules broke thread start (see the module comment).
  it("leaves alone what Python web servers, threads and uv use", () => {
    for (const name of ["select", "pselect6", "epoll_wait", "clone", "clone3", "execve", "personality", "socket"]) {
      expect(DENIED_SYSCALLS as readonly string[]).not.toContain(name);
    }
  });
});
