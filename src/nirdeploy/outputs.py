"""Outputs that never lose a user's data, and leave nothing behind.

Every file and folder nirdeploy writes goes through this module.

**Ownership rule.** nirdeploy deletes or replaces only what it created. An existing output folder
is replaced only when it is empty, or, with ``force``, when it is a nirdeploy deployment: its
marker ``deployment.json`` says so and the folder holds nothing but the files the marker lists
(:func:`nirdeploy.backend.compiled.owned_entries`). Never the working directory, ``/``, an
ancestor of the working directory or of an input, a symbolic link, or a path that is not a
folder. Anything else is an :class:`~nirdeploy.errors.OutputError` (exit code 2) naming the path.

**Atomic and race-free.** A folder is built in a hidden temporary sibling
(``.NAME.nirdeploy-tmp-PID-RANDOM``) and a file in a hidden temporary file next to it; the final
move never replaces something that appeared after the check: :func:`rename_noreplace` is Linux
``renameat2(RENAME_NOREPLACE)``; where that is missing or the file system refuses it, a folder is
moved with ``mkdir`` (fails if anything is there) + ``rename`` onto that new empty folder, and a
file with ``link`` (fails if anything is there) + ``unlink``. A deployment replaced with ``force``
is first moved aside, checked again there, and its listed files are then removed one by one (a
file that is not listed is never removed; the old folder is put back if the new one cannot be
moved into place).

**File outputs** (:func:`atomic_file`) are regular files, and a file output is never replaced
without ``force``, like a folder: an existing path is refused ("X already exists; --force
replaces it"), and one that appears while nirdeploy writes is left as it is. With ``force`` only
an existing regular file is replaced; a device, FIFO, socket, folder or symbolic link is refused
either way, and so is an input of the same command (or a file inside a folder it reads).
Several files of one command (:func:`atomic_files`, e.g. ``nmnist -o X.npy --labels-out
Y.npy``) are one output: they must name different files, all are written before any is moved
into place, and a failure writes none of them.

**Permissions** follow the umask (files 0666, folders 0777, minus the umask), like any program's.

**Signals.** :func:`signal_guard` (the CLI holds it for the whole command; every atomic output
holds it while it writes) turns the first SIGTERM or SIGHUP into :class:`Terminated` and the
first SIGINT into ``KeyboardInterrupt`` in the main thread, so every ``finally`` runs; when the
outermost guard exits with an exception, every registered temporary file and folder is removed
and every registered child process (:func:`register_child`) is killed. Repeated signals during
the clean-up are ignored. Handlers a program installed itself are left alone. An API caller's
process then gets the signal's default action; the CLI prints a message and exits with
128 + the signal number.

**Disk full, read-only, permission denied** while writing: :class:`OutputError` says so, and
nothing is left behind.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import errno
import os
import secrets
import shutil
import signal
import stat
import sys
import threading
from pathlib import Path
from typing import Callable, Iterable, Iterator

from .errors import NirDeployError, OutputError
from .inputs import check_flag, check_path

__all__ = [
    "Terminated",
    "signal_guard",
    "register_child",
    "unregister_child",
    "check_output_folder",
    "check_output_file",
    "atomic_folder",
    "atomic_file",
    "atomic_files",
    "check_distinct_files",
    "rename_noreplace",
]

TEMP_TAG = ".nirdeploy-tmp-"
OLD_TAG = ".nirdeploy-old-"


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived while nirdeploy was working (a BaseException, like
    KeyboardInterrupt, so that no ``except Exception`` swallows it)."""

    def __init__(self, signum: int):
        self.signum = signum
        try:
            name = signal.Signals(signum).name
        except ValueError:  # pragma: no cover
            name = str(signum)
        super().__init__(f"terminated by {name}")


# -- registry of temporaries and children ---------------------------------------------------------
_OWNER = os.getpid()
# path -> (kind, restore-to, thread); pid -> (kill, thread). A thread cleans up only its own.
_TEMPS: dict[str, tuple[str, str | None, int]] = {}
_CHILDREN: dict[int, tuple[Callable[[], None], int]] = {}
_GUARD = {"depth": 0, "saved": {}, "fired": None}
_GUARDED = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP", "SIGINT") if hasattr(signal, n))


def _register(path: str, kind: str, restore_to: str | None = None) -> None:
    _TEMPS[path] = (kind, restore_to, threading.get_ident())


def _unregister(path: str) -> None:
    _TEMPS.pop(path, None)


def register_child(pid: int, kill: Callable[[], None]) -> None:
    """A child process that must not outlive the command: ``kill()`` ends it when the command
    fails or is interrupted (call :func:`unregister_child` once it has exited)."""
    _CHILDREN[pid] = (kill, threading.get_ident())


def unregister_child(pid: int) -> None:
    _CHILDREN.pop(pid, None)


def _cleanup(all_threads: bool = False) -> None:
    """Kill registered children and remove registered temporaries of this thread (of every
    thread at exit), in this process only (not in a forked child)."""
    if os.getpid() != _OWNER:
        return
    me = threading.get_ident()
    for pid, (kill, tid) in list(_CHILDREN.items()):
        if all_threads or tid == me:
            with contextlib.suppress(Exception):
                kill()
            _CHILDREN.pop(pid, None)
    for path, (kind, restore_to, tid) in sorted(_TEMPS.items(), reverse=True):
        if not (all_threads or tid == me):
            continue
        if kind == "aside" and restore_to is not None:
            with contextlib.suppress(OSError):
                rename_noreplace(path, restore_to)  # put the user's previous deployment back
        elif kind == "dir":
            shutil.rmtree(path, ignore_errors=True)
        elif kind == "file":
            with contextlib.suppress(OSError):
                os.unlink(path)
        elif kind == "parent":
            with contextlib.suppress(OSError):
                os.rmdir(path)  # a folder we created for an output; only while still empty
        _TEMPS.pop(path, None)


atexit.register(_cleanup, True)


@contextlib.contextmanager
def _signals_blocked() -> Iterator[None]:
    """Delay the guarded signals while a temporary is created and registered."""
    if hasattr(signal, "pthread_sigmask"):
        old = signal.pthread_sigmask(signal.SIG_BLOCK, _GUARDED)
        try:
            yield
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
    else:  # pragma: no cover
        yield


def _handler(signum, frame) -> None:
    if _GUARD["fired"] is not None:
        return  # already stopping: let the clean-up finish
    _GUARD["fired"] = signum
    if signum == getattr(signal, "SIGINT", None):
        raise KeyboardInterrupt
    raise Terminated(signum)


def _is_default(signum: int, handler) -> bool:
    if signum == getattr(signal, "SIGINT", None):
        return handler is signal.default_int_handler or handler == signal.SIG_DFL
    return handler == signal.SIG_DFL


@contextlib.contextmanager
def signal_guard(*, redeliver: bool = True) -> Iterator[None]:
    """Clean up temporaries and children on SIGTERM, SIGHUP and SIGINT (see the module docstring).

    Re-entrant; a no-op outside the main thread. With ``redeliver`` (the API), a SIGTERM/SIGHUP
    that stopped the work is re-sent to the process once everything is cleaned up, so the
    process ends as it would have; the CLI passes ``redeliver=False`` and handles
    :class:`Terminated` itself."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    outer = _GUARD["depth"] == 0
    if outer:
        saved = {}
        for s in _GUARDED:
            cur = signal.getsignal(s)
            if _is_default(s, cur):
                saved[s] = cur
                signal.signal(s, _handler)
        _GUARD["saved"] = saved
        _GUARD["fired"] = None
    _GUARD["depth"] += 1
    try:
        yield
    except BaseException as e:
        _GUARD["depth"] -= 1
        if outer:
            _outer_exit(e, redeliver)
        raise
    else:
        _GUARD["depth"] -= 1
        if outer:
            _outer_exit(None, redeliver)


def _outer_exit(exc: BaseException | None, redeliver: bool) -> None:
    try:
        if exc is not None:
            with _signals_blocked():
                _cleanup()
    finally:
        for s, h in _GUARD["saved"].items():
            signal.signal(s, h)
        fired, _GUARD["fired"], _GUARD["saved"] = _GUARD["fired"], None, {}
        if redeliver and isinstance(exc, Terminated) and fired == exc.signum:
            os.kill(os.getpid(), exc.signum)


# -- no-replace rename --------------------------------------------------------------------------
_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
_renameat2_fn: list = []


def _renameat2():
    if not _renameat2_fn:
        fn = None
        if sys.platform.startswith("linux"):
            try:
                fn = ctypes.CDLL(None, use_errno=True).renameat2
                fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
                fn.restype = ctypes.c_int
            except (OSError, AttributeError):
                fn = None
        _renameat2_fn.append(fn)
    return _renameat2_fn[0]


def rename_noreplace(src: str | os.PathLike, dst: str | os.PathLike, *, native: bool = True) -> None:
    """Move ``src`` to ``dst`` unless something exists at ``dst`` (then FileExistsError, and
    ``src`` is left where it was). Atomic with Linux ``renameat2(RENAME_NOREPLACE)``; elsewhere
    (or ``native=False``) ``mkdir`` + ``rename`` for a folder, ``link`` + ``unlink`` for a file."""
    src, dst = os.fspath(src), os.fspath(dst)
    fn = _renameat2() if native else None
    if fn is not None:
        if fn(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
            return
        e = ctypes.get_errno()
        if e not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
            raise OSError(e, os.strerror(e), dst)
    st = os.lstat(src)
    if stat.S_ISDIR(st.st_mode):
        os.mkdir(dst, 0o700)  # FileExistsError if anything is there; only ours from here on
        try:
            os.rename(src, dst)  # replaces our empty folder; a folder filled meanwhile: ENOTEMPTY
        except OSError:
            with contextlib.suppress(OSError):
                os.rmdir(dst)
            raise
    else:
        try:
            os.link(src, dst, follow_symlinks=False)  # FileExistsError if anything is there
        except FileExistsError:
            raise
        except OSError:  # no hard links on this file system: the last resort is check + rename
            if os.path.lexists(dst):
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), dst) from None
            os.rename(src, dst)
            return
        os.unlink(src)


# -- checks ---------------------------------------------------------------------------------------
def _ancestors(p: str) -> list[str]:
    out = []
    while True:
        out.append(p)
        parent = os.path.dirname(p)
        if parent == p:
            return out
        p = parent


def _protected(inputs: Iterable) -> dict[str, str]:
    """Real paths that are never replaced, with why."""
    prot: dict[str, str] = {}
    try:
        cwd = os.path.realpath(os.getcwd())
    except OSError:
        cwd = None
    for inp in inputs:
        if inp is None:
            continue
        try:
            rp = os.path.realpath(os.fspath(inp))
        except (TypeError, ValueError, OSError):
            continue
        for a in _ancestors(rp):
            prot.setdefault(a, f"it holds the input {os.fspath(inp)}" if a != rp else f"it is the input {os.fspath(inp)}")
    if cwd is not None:
        for a in _ancestors(cwd)[1:]:
            prot[a] = "it is an ancestor of the working directory"
        prot[cwd] = "it is the working directory"
    prot[os.path.realpath(os.sep)] = "it is the root folder"
    return prot


def _fs_error(action: str, path: str, e: OSError) -> OutputError:
    why = {
        errno.ENOSPC: "no space left on the device",
        errno.EROFS: "the file system is read-only",
        errno.EACCES: "permission denied",
        errno.EPERM: "operation not permitted",
        errno.EFBIG: "the file is too large for the file system or the file-size limit",
        getattr(errno, "EDQUOT", -1): "disk quota exceeded",
    }.get(e.errno, e.strerror)
    if why is None:  # numpy reports a short write without an errno
        why = f"the write was cut short, the disk is full or a file-size limit was reached ({str(e)[:100]})"
    return OutputError(f"cannot {action} {path}: {why}; nothing was written")


def _describe(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISREG(mode):
        return "a file"
    return "not a regular file"


def check_output_folder(folder, force: bool = False, inputs: Iterable = ()) -> str:
    """Check that ``folder`` may be written (see the ownership rule in the module docstring).

    Returns its real path. Raises :class:`OutputError` (exit code 2) naming the folder; nothing
    is touched."""
    raw = check_path(folder, "output folder")
    real = os.path.realpath(raw)
    prot = _protected(inputs)
    if real in prot or os.path.basename(real) in ("", ".", ".."):
        raise OutputError(f"refusing to write to {raw}: {prot.get(real, 'it is not a folder name')}; choose a new folder")
    try:
        st = os.lstat(raw)
    except (FileNotFoundError, NotADirectoryError):
        st = None
    except OSError as e:
        raise OutputError(f"cannot use {raw}: {e.strerror or e}") from None
    if st is None:
        anc = os.path.dirname(real)
        while not os.path.lexists(anc) and os.path.dirname(anc) != anc:
            anc = os.path.dirname(anc)
        if not os.path.isdir(anc):
            raise OutputError(f"cannot create {raw}: {anc} is not a folder")
        return real
    if stat.S_ISLNK(st.st_mode):
        raise OutputError(f"refusing to replace {raw}: it is a symbolic link; nirdeploy writes only folders it creates")
    if not stat.S_ISDIR(st.st_mode):
        raise OutputError(f"refusing to replace {raw}: it exists and is {_describe(st.st_mode)}, not a folder")
    if os.path.ismount(real):
        raise OutputError(f"refusing to replace {raw}: it is a mount point")
    try:
        empty = not any(True for _ in os.scandir(real))
    except OSError as e:
        raise OutputError(f"cannot use {raw}: {e.strerror or e}") from None
    if empty:
        return real
    if not force:
        raise OutputError(f"output folder {raw} already exists; use --force to replace a folder written by nirdeploy")
    _owned(real, raw)
    return real


def _owned(real: str, shown: str) -> list[str]:
    from .backend.compiled import owned_entries

    try:
        return owned_entries(real)
    except NirDeployError as e:
        raise OutputError(
            f"refusing to replace {shown}: it is not a folder written by nirdeploy ({_reason(e)}); "
            "remove it yourself or choose another folder"
        ) from None
    except OSError as e:
        raise OutputError(f"refusing to replace {shown}: {e.strerror or e}") from None


def _reason(e: NirDeployError) -> str:
    s = str(e)
    return s[len("damaged compiled folder: "):] if s.startswith("damaged compiled folder: ") else s


def check_output_file(path, inputs: Iterable = (), *, force: bool = False) -> str:
    """Check that ``path`` may be written as a file: absent, or (only with ``force``) an existing
    regular file that is not one of ``inputs``; its folder exists. Returns the real path; raises
    OutputError naming the path (an existing file without ``force``: "already exists")."""
    raw = check_path(path, "output file")
    force = check_flag("force", force)
    if raw.endswith(os.sep) or os.path.basename(raw) in (".", ".."):
        raise OutputError(f"refusing to write {raw}: it names a folder, not a file")
    parent = os.path.dirname(os.path.abspath(raw))
    if not os.path.isdir(parent):
        raise OutputError(f"cannot write {raw}: folder {parent} does not exist")
    real = os.path.join(os.path.realpath(parent), os.path.basename(raw))
    for inp in inputs:
        if inp is not None and os.path.isdir(inp):
            top = os.path.realpath(inp)
            if real.startswith(top.rstrip(os.sep) + os.sep):
                raise OutputError(f"refusing to write {raw}: it is inside {inp}, a folder this command reads")
    try:
        st = os.lstat(real)
    except FileNotFoundError:
        return real
    except OSError as e:
        raise OutputError(f"cannot use {raw}: {e.strerror or e}") from None
    if not stat.S_ISREG(st.st_mode):
        raise OutputError(f"refusing to replace {raw}: it is {_describe(st.st_mode)}; nirdeploy writes only regular files")
    for inp in inputs:
        if inp is None:
            continue
        with contextlib.suppress(OSError, TypeError, ValueError):
            if os.path.samefile(real, os.fspath(inp)):
                raise OutputError(f"refusing to write {raw}: it is an input of this command")
    if not force:
        raise OutputError(f"{raw} already exists; --force replaces it (nirdeploy replaces a file only when asked)")
    if not st.st_mode & stat.S_IWUSR:
        # a rename replaces a file whatever its mode: the owner's read-only mark is honoured here
        raise OutputError(f"refusing to replace {raw}: it is read-only (mode {stat.S_IMODE(st.st_mode):o}); make it writable to replace it")
    return real


# -- temporaries ----------------------------------------------------------------------------------
def _temp_name(parent: str, name: str, tag: str) -> str:
    return os.path.join(parent, f".{name[:100]}{tag}{os.getpid()}-{secrets.token_hex(4)}")


def _makedirs(parent: str, made: list[str]) -> None:
    """Create ``parent`` and its missing ancestors, registered so a failure removes them; each
    folder created is appended to ``made``."""
    missing = []
    p = parent
    while not os.path.lexists(p):
        missing.append(p)
        p = os.path.dirname(p)
    for d in reversed(missing):
        with _signals_blocked():
            os.mkdir(d, 0o777)
            _register(d, "parent")
            made.append(d)


def _release_parents(made: list[str]) -> None:
    """The output is in place: the folders created for it stay."""
    for d in made:
        _unregister(d)
    made.clear()


def _remove_parents(made: list[str]) -> None:
    """The output failed: remove the folders created for it (only while still empty)."""
    for d in reversed(made):
        with contextlib.suppress(OSError):
            os.rmdir(d)
        _unregister(d)
    made.clear()


class _Atomic:
    """What atomic_folder and atomic_file share: on success ``_finish`` moves the temporary into
    place; on any error or signal ``_discard`` removes it, and an OSError becomes OutputError."""

    shown: str
    _guard: contextlib.AbstractContextManager

    def _close(self) -> None:
        pass

    def _finish(self) -> None:
        raise NotImplementedError

    def _discard(self) -> None:
        raise NotImplementedError

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            self._close()
            if exc_type is None:
                self._finish()
        except BaseException as e:
            self._discard()
            self._guard.__exit__(type(e), e, e.__traceback__)
            if isinstance(e, OSError):
                raise _fs_error("write", self.shown, e) from None
            raise
        if exc_type is not None:
            self._discard()
            self._guard.__exit__(exc_type, exc, tb)
            if isinstance(exc, OSError):
                raise _fs_error("write", self.shown, exc) from None
            return False
        self._guard.__exit__(None, None, None)
        return False


class atomic_folder(_Atomic):
    """``with atomic_folder(folder, force=..., inputs=[...]) as tmp:`` write into ``tmp``; on
    success it becomes ``folder`` (ownership rule, no-replace move); on any error or signal it is
    removed and ``folder`` is left as it was. OSErrors become :class:`OutputError`."""

    def __init__(self, folder, force: bool = False, inputs: Iterable = ()):
        self.folder = folder
        self.force = force
        self.inputs = list(inputs)
        self._made: list[str] = []
        self._guard = signal_guard()

    def __enter__(self) -> Path:
        self.shown = check_path(self.folder, "output folder")
        self.real = check_output_folder(self.folder, self.force, self.inputs)
        self._guard.__enter__()
        try:
            parent, name = os.path.split(self.real)
            _makedirs(parent, self._made)
            with _signals_blocked():
                self.tmp = _temp_name(parent, name, TEMP_TAG)
                os.mkdir(self.tmp, 0o777)
                _register(self.tmp, "dir")
        except BaseException as e:
            _remove_parents(self._made)
            self._guard.__exit__(*sys.exc_info())
            if isinstance(e, OSError):
                raise _fs_error("create", self.shown, e) from None
            raise
        return Path(self.tmp)

    def _finish(self) -> None:
        self._place()
        _release_parents(self._made)

    def _discard(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
        _unregister(self.tmp)
        _remove_parents(self._made)

    def _place(self) -> None:
        real, shown = self.real, self.shown
        try:
            st = os.lstat(real)
        except FileNotFoundError:
            st = None
        aside = None
        if st is not None:  # check again: it may have changed since __enter__
            check_output_folder(self.folder, self.force, self.inputs)
            if any(True for _ in os.scandir(real)):
                aside = self._move_aside()
            else:
                try:
                    os.rmdir(real)  # only an empty folder; one filled meanwhile stays
                except FileNotFoundError:
                    pass
                except OSError as e:
                    if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
                        raise OutputError(f"{shown} was filled while nirdeploy was writing; it was left as it is") from None
                    raise
        try:
            with _signals_blocked():
                rename_noreplace(self.tmp, real)
                _unregister(self.tmp)
                if aside is not None:
                    self._remove_aside(aside)
        except FileExistsError:
            self._appeared(aside)
        except OSError as e:
            if e.errno == errno.ENOTEMPTY:
                self._appeared(aside)
            raise

    def _appeared(self, aside: str | None) -> None:
        if aside is not None:
            _unregister(aside)
            raise OutputError(
                f"{self.shown} appeared while nirdeploy was writing; it was not replaced. The previous deployment "
                f"was moved to {aside}"
            ) from None
        raise OutputError(f"{self.shown} appeared while nirdeploy was writing; it was not replaced") from None

    def _move_aside(self) -> str:
        """Move the existing deployment aside (atomically), then check what was moved."""
        parent, name = os.path.split(self.real)
        with _signals_blocked():
            aside = _temp_name(parent, name, OLD_TAG)
            rename_noreplace(self.real, aside)
            _register(aside, "aside", self.real)
        try:
            self._aside_entries = _owned(aside, self.shown)
        except BaseException:
            with contextlib.suppress(OSError):
                rename_noreplace(aside, self.real)
                _unregister(aside)
            raise
        return aside

    def _remove_aside(self, aside: str) -> None:
        """Remove what nirdeploy wrote there, file by file; anything else stays."""
        _unregister(aside)
        for name in self._aside_entries:
            with contextlib.suppress(OSError):
                p = os.path.join(aside, name)
                if stat.S_ISREG(os.lstat(p).st_mode):
                    os.unlink(p)
        with contextlib.suppress(OSError):
            os.rmdir(aside)


class atomic_file(_Atomic):
    """``with atomic_file(path, inputs=[...]) as f:`` write bytes to ``f``; on success the file
    is moved to ``path``: a new path, or (with ``force``) a regular file it replaces (see
    :func:`check_output_file`); a file that appeared meanwhile is replaced only with ``force``.
    On any error or signal the temporary is removed and ``path`` is left as it was. With
    ``parents``, missing folders above ``path`` are created (and removed again if the write
    fails)."""

    def __init__(self, path, inputs: Iterable = (), *, parents: bool = False, force: bool = False):
        self.path = path
        self.inputs = list(inputs)
        self.parents = parents
        self.force = force
        self._made: list[str] = []
        self._guard = signal_guard()

    def __enter__(self):
        self.shown = check_path(self.path, "output file")
        if not self.parents:
            self.real = check_output_file(self.path, self.inputs, force=self.force)
        self._guard.__enter__()
        try:
            if self.parents:
                _makedirs(_checked_parent(self.shown), self._made)
                self.real = check_output_file(self.path, self.inputs, force=self.force)
        except BaseException as e:
            _remove_parents(self._made)
            self._guard.__exit__(*sys.exc_info())
            if isinstance(e, OSError):
                raise _fs_error("create the folder of", self.shown, e) from None
            raise
        parent, name = os.path.split(self.real)
        try:
            with _signals_blocked():
                self.tmp = _temp_name(parent, name, TEMP_TAG)
                fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0), 0o666)
                _register(self.tmp, "file")
            self.f = os.fdopen(fd, "wb")
        except BaseException as e:
            _remove_parents(self._made)
            self._guard.__exit__(*sys.exc_info())
            if isinstance(e, OSError):
                raise _fs_error("write", self.shown, e) from None
            raise
        return self.f

    def _close(self) -> None:
        self.f.close()

    def _finish(self) -> None:
        self._place()
        _release_parents(self._made)

    def _discard(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.tmp)
        _unregister(self.tmp)
        _remove_parents(self._made)

    def _place(self) -> None:
        try:
            st = os.lstat(self.real)
        except FileNotFoundError:
            st = None
        if st is None or not self.force:
            try:
                rename_noreplace(self.tmp, self.real)
            except FileExistsError:
                raise OutputError(f"{self.shown} appeared while nirdeploy was writing; it was not replaced") from None
        else:
            check_output_file(self.path, self.inputs, force=True)  # still a regular file, not an input
            with contextlib.suppress(OSError):  # the replacement keeps the file's permissions (a private file stays private)
                os.chmod(self.tmp, stat.S_IMODE(os.lstat(self.real).st_mode))
            os.replace(self.tmp, self.real)
        _unregister(self.tmp)


def _checked_parent(path: str) -> str:
    """The folder of ``path`` (absolute); its nearest existing ancestor must be a folder."""
    parent = os.path.dirname(os.path.abspath(path))
    anc = parent
    while not os.path.lexists(anc) and os.path.dirname(anc) != anc:
        anc = os.path.dirname(anc)
    if not os.path.isdir(anc):
        raise OutputError(f"cannot write {path}: {anc} is not a folder")
    return parent


class atomic_files:
    """``with atomic_files([path1, path2], inputs=[...]) as (f1, f2):`` several files written by
    one command, as one output. Each path follows :func:`check_output_file`, and they must name
    different files; an existing one is replaced only with ``force``. Every file is written to
    its temporary first; only when all are complete (and every path is checked again) are they
    moved into place, one after the other. On any error or signal every temporary is removed and
    no path is changed. OSErrors become :class:`OutputError`."""

    def __init__(self, paths: Iterable, inputs: Iterable = (), *, force: bool = False):
        self.paths = list(paths)
        self.inputs = list(inputs)
        self.force = force
        self._guard = signal_guard()

    def __enter__(self) -> list:
        check_distinct_files(self.paths, self.inputs, force=self.force)
        self.items = [atomic_file(p, self.inputs, force=self.force) for p in self.paths]
        self._guard.__enter__()
        entered: list[atomic_file] = []
        try:
            for a in self.items:
                a.__enter__()
                entered.append(a)
        except BaseException:
            info = sys.exc_info()
            for a in reversed(entered):
                a._close()
                a._discard()
                a._guard.__exit__(*info)
            self._guard.__exit__(*info)
            raise
        return [a.f for a in self.items]

    def __exit__(self, exc_type, exc, tb) -> bool:
        items = self.items
        try:
            for a in items:
                a._close()
            if exc_type is None:
                for a in items:  # all still writable, before any of them is placed
                    check_output_file(a.path, a.inputs, force=a.force)
                for a in items:
                    a._finish()
        except BaseException as e:
            self._fail(type(e), e, e.__traceback__)
            if isinstance(e, OSError):
                raise _fs_error("write", items[0].shown if len(items) == 1 else ", ".join(a.shown for a in items), e) from None
            raise
        if exc_type is not None:
            self._fail(exc_type, exc, tb)
            if isinstance(exc, OSError):
                raise _fs_error("write", ", ".join(a.shown for a in items), exc) from None
            return False
        for a in reversed(items):
            a._guard.__exit__(None, None, None)
        self._guard.__exit__(None, None, None)
        return False

    def _fail(self, exc_type, exc, tb) -> None:
        for a in reversed(self.items):
            a._discard()
            a._guard.__exit__(exc_type, exc, tb)
        self._guard.__exit__(exc_type, exc, tb)


def check_distinct_files(paths: Iterable, inputs: Iterable = (), *, force: bool = False) -> list[str]:
    """Check every path with :func:`check_output_file` (``force`` as there) and that no two
    name the same file (through ``..``, a symbolic link to a folder or a hard link). Returns the
    real paths."""
    paths = list(paths)
    reals = [check_output_file(p, inputs, force=force) for p in paths]
    for i, a in enumerate(reals):
        for j in range(i):
            same = a == reals[j]
            if not same and os.path.lexists(a) and os.path.lexists(reals[j]):
                with contextlib.suppress(OSError):
                    same = os.path.samefile(a, reals[j])
            if same:
                raise OutputError(f"{check_path(paths[j], 'output file')} and {check_path(paths[i], 'output file')} "
                                  "name the same file; give two different files")
    return reals
