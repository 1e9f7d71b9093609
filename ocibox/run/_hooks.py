"""OCI hooks (runtime-spec config.md "POSIX-platform Hooks"): each hook's program run with its args and
env (and nothing else of ours), the container's state JSON on its stdin, killed at its timeout; a hook
that fails stops the step, with its stderr in the error (as runc does).

Where each kind runs (the executor and ``ocibox-runtime`` call ``run_hooks`` at these points):

- prestart (deprecated) and createRuntime: by the creator, in the runtime's namespaces, once create made
  the container's namespaces and mounts, before pivot_root (PID 1 waits on its hooks pipe meanwhile);
- createContainer: by PID 1, in the container's namespaces, right after, still before pivot_root (the
  hook's path resolves on the host);
- startContainer: by PID 1 after start, in the container (after pivot_root: the path resolves in the
  container), with the process's own credentials, right before the program's exec;
- poststart: by ``start`` after the program was started; poststop: by ``delete`` after the container is gone.
"""

from __future__ import annotations

import subprocess

from ocibox import errors

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocibox import ocispec


class HookError(errors.RuntimeSetupError):
    """A hook exited non-zero, could not be run, or outlived its timeout."""


def run_hooks(hooks: tuple[ocispec.Hook, ...], state: bytes, kind: str) -> None:
    """Run ``hooks`` in order with ``state`` (the OCI state JSON) on stdin; HookError on the first failure."""
    for i, h in enumerate(hooks):
        env = dict(e.partition("=")[::2] for e in h.env)
        what = f"{kind} hook #{i} ({h.path})"
        try:
            r = subprocess.run(list(h.args) or [h.path], executable=h.path, input=state, env=env,
                               capture_output=True, timeout=h.timeout, umask=0o022, close_fds=True, cwd="/")
        except subprocess.TimeoutExpired:
            raise HookError(f"{what} did not finish in {h.timeout} s (timeout): killed") from None
        except OSError as e:
            raise HookError(f"{what} cannot be run: {e.strerror}") from None
        if r.returncode != 0:
            status = (f"killed by signal {-r.returncode}" if r.returncode < 0 else f"exit status {r.returncode}")
            out = r.stdout.decode(errors="replace").strip()[-300:]
            err = r.stderr.decode(errors="replace").strip()[-300:]
            raise HookError(f"{what} failed: {status}, stdout: {out}, stderr: {err}")


def with_status(state: bytes, status: str) -> bytes:
    """The state JSON with another status (PID 1 reuses the creator's document for startContainer)."""
    from ocibox import _json as json

    doc = json.loads(state)
    doc["status"] = status
    return json.dumps(doc).encode()

