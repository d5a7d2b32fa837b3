"""One artifact root on disk: which real paths artifact paths name, and the atomic commit of a
staged temp file into the tree. Both the whole-file writes (local.py) and the staged uploads
(local_staging.py) build on it, so neither reaches into the other.

Every path is joined to and compared with the *real* root (symlinks resolved), so a root reached
through a symlink still confines correctly, and a link inside the tree that leads out of it is
refused.
"""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from pathlib import Path

from metricgate.domain.artifacts.paths import normalize_artifact_path
from metricgate.domain.errors import InvalidParameter
from metricgate.stores.artifacts.files import StagedFile, fsync_dir

# Hidden from listings and reserved: no artifact path may start with it.
STAGING_DIR = ".metricgate-staging"
# A concurrent delete of the parent tree can race a commit; retry the mkdir+rename this often.
_COMMIT_ATTEMPTS = 3


class LocalRoot:
    def __init__(self, root: Path | str) -> None:
        self.path = os.path.realpath(root)
        self._prefix = self.path.rstrip(os.sep) + os.sep
        self.staging = os.path.join(self.path, STAGING_DIR)
        self._staging_prefix = self.staging + os.sep

    # ------------------------------------------------------------------ path handling

    def relative(self, path: str, *, allow_root: bool = False) -> str:
        """The normalised artifact path; the staging area's name is refused."""
        rel = normalize_artifact_path(path, allow_root=allow_root)
        if rel.split("/", 1)[0] == STAGING_DIR:
            raise InvalidParameter(f"Invalid artifact path {rel!r}: {STAGING_DIR!r} is reserved")
        return rel

    def _lexical(self, rel: str) -> str:
        return os.path.join(self.path, *rel.split("/")) if rel else self.path

    def is_confined(self, real: str) -> bool:
        """``real`` is inside the root and outside its staging area."""
        inside = real == self.path or real.startswith(self._prefix)
        staged = real == self.staging or real.startswith(self._staging_prefix)
        return inside and not staged

    def real(self, rel: str) -> str:
        """The symlink-free location of ``rel``; refuses links that lead out of the root."""
        real = os.path.realpath(self._lexical(rel))
        if not self.is_confined(real):
            raise InvalidParameter(
                f"Invalid artifact path {rel!r}: it resolves outside the artifact root"
            )
        return real

    def real_parent(self, rel: str) -> tuple[str, str]:
        """(real parent dir, final name): for operations that act on the entry itself."""
        parent, _, name = rel.rpartition("/")
        return self.real(parent), name

    # ------------------------------------------------------------------ atomic writes

    def check_writable(self, rel: str) -> None:
        """Refuse a destination that can never be written (it is a directory)."""
        real_parent, name = self.real_parent(rel)
        target = os.path.join(real_parent, name)
        if os.path.isdir(target) and not os.path.islink(target):
            raise InvalidParameter(f"Invalid artifact path {rel!r}: it is a directory")

    def create_staged(self) -> StagedFile:
        """A new temp file in the staging area, for ``commit`` to move into place."""
        # Staging lives under the root so the final os.replace stays on one filesystem: a
        # rename across filesystems is not atomic (it fails with EXDEV).
        os.makedirs(self.staging, exist_ok=True)
        path = os.path.join(self.staging, f"{uuid.uuid4().hex}.part")
        fd = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666
        )
        return StagedFile(fd, path)

    def commit(self, staged: StagedFile, rel: str) -> None:
        """fsync the staged file and rename it to ``rel``: readers see the old file or the new."""
        staged.fd.call(os.fsync)
        staged.fd.release()
        source = staged.path  # read once: a cancelled put may clear it from the event loop
        if source is None:
            raise OSError(errno.ENOENT, "staged artifact was discarded before commit")
        for attempt in range(_COMMIT_ATTEMPTS):
            real_parent, name = self.real_parent(rel)
            try:
                self._makedirs_durable(real_parent, rel)
                self.check_writable(rel)
                os.replace(source, os.path.join(real_parent, name))
                break
            except FileNotFoundError:
                # The parent tree was deleted between mkdir and rename; build it again.
                if attempt == _COMMIT_ATTEMPTS - 1:
                    raise
        staged.path = None  # now owned by the destination
        fsync_dir(real_parent)

    def _makedirs_durable(self, real_dir: str, rel: str) -> None:
        """mkdir -p that fsyncs each parent it adds an entry to, so new dirs survive a crash."""
        missing: list[str] = []
        current = real_dir
        while not os.path.isdir(current):
            if os.path.lexists(current):
                raise InvalidParameter(f"Invalid artifact path {rel!r}: a parent of it is a file")
            missing.append(current)
            current = os.path.dirname(current)
        for directory in reversed(missing):
            with contextlib.suppress(FileExistsError):
                os.mkdir(directory)
            fsync_dir(os.path.dirname(directory))
        # A link swapped in while we were creating dirs must not take the file elsewhere.
        if not self.is_confined(os.path.realpath(real_dir)):
            raise InvalidParameter(
                f"Invalid artifact path {rel!r}: it resolves outside the artifact root"
            )
