//! From a request's URL path to a file under the served root, or a refusal.
//!
//! This is the security core of `sockit serve http --root DIR` (SPEC 4):
//! [`resolve`] never answers with a path outside the root unless the
//! [`PathPolicy`] allows symlinks out, and never with a dotfile unless it
//! allows those. It works on the raw, still percent-encoded path and is
//! strict rather than clever: it splits on `/` *before* decoding (so an
//! encoded `%2f` is seen for what it is), refuses `..` instead of
//! normalising it away, and checks the canonical target, symlinks resolved,
//! against the canonical root. The responder asks it first and serves only
//! what it returns; [`redirect_location`] builds the trailing-slash redirect
//! without turning `//host` into an open redirect.

use std::fs::{self, File, Metadata};
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};

/// The longest raw request path served, in bytes (SPEC 4: longer gets 414).
pub const MAX_PATH: usize = 4096;

/// What the server may serve under a root. The default serves neither
/// dotfiles nor symlinks that leave the root.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PathPolicy {
    /// Serve dotfiles and files in dot-directories (`--hidden`).
    pub hidden: bool,
    /// Which symlinks are followed (`--symlinks`).
    pub symlinks: Symlinks,
}

/// Which symlinks a path may go through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Symlinks {
    /// Those whose target stays inside the root (`inside`).
    #[default]
    Inside,
    /// Any, wherever they lead (`any`): for a root that links to content
    /// kept elsewhere, on purpose.
    Any,
    /// None at all (`none`), as nginx's `disable_symlinks on`.
    Never,
}

impl std::str::FromStr for Symlinks {
    type Err = String;

    fn from_str(text: &str) -> Result<Symlinks, String> {
        match text {
            "inside" => Ok(Symlinks::Inside),
            "any" => Ok(Symlinks::Any),
            "none" => Ok(Symlinks::Never),
            _ => Err(format!(
                "{text:?} is not a symlink policy (inside, any or none)"
            )),
        }
    }
}

/// What a request path maps to. Paths are canonical: absolute, with no
/// symlinks, `.` or `..` left in them.
#[derive(Debug)]
pub enum Target {
    /// A regular file, opened, with the metadata read from that open file.
    File {
        /// The file's canonical path.
        path: PathBuf,
        /// Its metadata (size, modification time) as [`resolve`] saw it.
        meta: Metadata,
        /// The file itself: what is sent is what was checked.
        file: File,
    },
    /// A directory, to list or to look for `index.html` in.
    Dir {
        /// The directory's canonical path.
        path: PathBuf,
        /// The request lacked the trailing slash: answer with a redirect
        /// to [`redirect_location`] so relative links in the page work.
        /// Not to `raw_path` plus `/`: for `//evil.com` that `Location`
        /// is another host's URL, an open redirect.
        slash_redirect: bool,
    },
}

/// Why a request path is not served, one variant per status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// 400: invalid percent-encoding, invalid UTF-8 once decoded, a NUL
    /// byte, or a path not starting with `/`.
    #[error("malformed request path")]
    BadRequest,
    /// 414: the raw path is longer than [`MAX_PATH`].
    #[error("request path longer than {MAX_PATH} bytes")]
    TooLong,
    /// 403: a `..` segment (encoded or not), an encoded `/` or `\` inside a
    /// segment, a raw `\`, a symlink leaving the root, or a file the server
    /// has no permission to read.
    #[error("forbidden request path")]
    Forbidden,
    /// 404: missing, a dotfile without [`PathPolicy::hidden`], or neither a
    /// regular file nor a directory (sockets, FIFOs, devices).
    #[error("no such file")]
    NotFound,
}

impl Refusal {
    /// The HTTP status code this refusal is answered with.
    pub fn status(self) -> u16 {
        match self {
            Refusal::BadRequest => 400,
            Refusal::TooLong => 414,
            Refusal::Forbidden => 403,
            Refusal::NotFound => 404,
        }
    }
}

/// Maps `raw_path` (the request's `uri.path()`: still percent-encoded, no
/// query) to a file or directory under `root`.
///
/// `root` must already be canonical (`std::fs::canonicalize`, once, at
/// startup): the answer is checked against it component by component, so a
/// root that is itself reached through a symlink would refuse everything.
///
/// The checks, in order: length; a leading `/`; no raw `\`; then each
/// `/`-separated segment is percent-decoded on its own and refused if the
/// encoding, UTF-8 or a NUL is bad (400), if it is `..` or holds a `/` or
/// `\` (403). Empty and `.` segments are skipped, so `//etc/passwd` is
/// `etc/passwd` under the root. A segment starting with `.` without
/// [`PathPolicy::hidden`] is a 404 before the filesystem is touched. The
/// joined path is then canonicalized and must still lie under the root
/// (unless [`Symlinks::Any`]) and, without `hidden`, have
/// no dot component under it (a symlink `visible -> .secret` exposes
/// nothing). A file asked for with a trailing slash is a 404, as in POSIX.
/// Only the requested path is checked: a directory listing must leave
/// dotfiles out by itself.
///
/// The first refusal found wins: `/%2f/%zz` is a 403, not a 400.
///
/// # Errors
/// A [`Refusal`] naming the status code to answer with.
///
/// # How, and races
/// First, one `openat2` with `RESOLVE_NO_SYMLINKS`: the root is canonical
/// and the segments hold no `.` or `..`, so a path with no symlink on the
/// way *is* canonical, and the kernel checks that in the same call that
/// opens the file (no window for a swap). A symlink on the way (or a
/// kernel without `openat2`) takes the slow path: canonicalize, check,
/// open. There the answer is true when it is given: someone who can write
/// inside the root could swap a checked directory for a symlink before
/// the open, and the root of a file server is not usually writable by its
/// clients.
///
/// ```
/// use sockit::http::path::{PathPolicy, Refusal, resolve};
/// let root = std::env::temp_dir().canonicalize().unwrap();
/// let policy = PathPolicy::default();
/// assert_eq!(resolve(&root, "/../etc/passwd", &policy).unwrap_err(), Refusal::Forbidden);
/// assert_eq!(resolve(&root, "/a%2f..%2fb", &policy).unwrap_err(), Refusal::Forbidden);
/// assert_eq!(resolve(&root, "/%00", &policy).unwrap_err(), Refusal::BadRequest);
/// ```
pub fn resolve(root: &Path, raw_path: &str, policy: &PathPolicy) -> Result<Target, Refusal> {
    if raw_path.len() > MAX_PATH {
        return Err(Refusal::TooLong);
    }
    let Some(rest) = raw_path.strip_prefix('/') else {
        return Err(Refusal::BadRequest);
    };
    // Windows and browsers read `\` as a separator; no file server needs it.
    if rest.contains('\\') {
        return Err(Refusal::Forbidden);
    }

    let mut joined = root.to_path_buf();
    let mut asks_hidden = false;
    // "/" names the root, a directory; "/a.txt" does not end in one.
    let mut wants_dir = true;
    for raw_segment in rest.split('/') {
        let segment = decode_segment(raw_segment)?;
        wants_dir = segment.is_empty() || segment == ".";
        match segment.as_str() {
            "" | "." => continue,
            ".." => return Err(Refusal::Forbidden),
            _ => {}
        }
        if segment.contains(['/', '\\']) {
            return Err(Refusal::Forbidden);
        }
        asks_hidden |= segment.starts_with('.');
        // Push only what is one plain name to this platform: `Path::push`
        // of anything absolute (`C:` on Windows) would replace the root.
        let mut components = Path::new(&segment).components();
        match (components.next(), components.next()) {
            (Some(Component::Normal(name)), None) if name == segment.as_str() => joined.push(name),
            _ => return Err(Refusal::Forbidden),
        }
    }
    // Deferred so that a later `..` is still a 403, and decided before any
    // system call so a dotfile's existence does not show in the timing.
    if asks_hidden && !policy.hidden {
        return Err(Refusal::NotFound);
    }

    let (canonical, file, meta) = open_checked(root, joined, policy)?;
    if meta.is_dir() {
        Ok(Target::Dir {
            path: canonical,
            slash_redirect: !raw_path.ends_with('/'),
        })
    } else {
        match file {
            Some(file) if meta.is_file() && !wants_dir => Ok(Target::File {
                path: canonical,
                meta,
                file,
            }),
            _ => Err(Refusal::NotFound),
        }
    }
}

/// Opens what is at `joined`, a path under the root with no `.` or `..`
/// segment, if the policy lets it be served: its canonical path, the open
/// file (`None` for what is not a regular file), and the metadata of what
/// was opened.
fn open_checked(
    root: &Path,
    joined: PathBuf,
    policy: &PathPolicy,
) -> Result<(PathBuf, Option<File>, Metadata), Refusal> {
    match open_without_symlinks(&joined) {
        Opened::File(file, meta) => Ok((joined, meta.is_file().then_some(file), meta)),
        Opened::Refused(refusal) => Err(refusal),
        Opened::SlowPath => {
            let (canonical, meta) = contained(root, &joined, policy)?;
            if !meta.is_file() {
                return Ok((canonical, None, meta));
            }
            let file = File::open(&canonical).map_err(|e| io_refusal(&e))?;
            // Checked, then opened: the metadata of what was opened.
            let meta = file.metadata().map_err(|e| io_refusal(&e))?;
            Ok((canonical, Some(file), meta))
        }
    }
}

/// A regular file at a known name inside a directory or beside a file
/// that [`resolve`] returned (`index.html`, a precompressed sibling),
/// opened, if the policy lets it be served: a symlink out of the root is
/// passed over, as [`resolve`] would refuse it.
fn open_known(
    root: &Path,
    joined: PathBuf,
    policy: &PathPolicy,
) -> Option<(PathBuf, File, Metadata)> {
    match open_checked(root, joined, policy) {
        Ok((path, Some(file), meta)) => Some((path, file, meta)),
        _ => None,
    }
}

/// The `index.html` of a directory [`resolve`] returned, if there is one
/// that may be served.
pub fn index(root: &Path, dir: &Path, policy: &PathPolicy) -> Option<(PathBuf, File, Metadata)> {
    open_known(root, dir.join("index.html"), policy)
}

/// What [`open_without_symlinks`] found.
enum Opened {
    /// Opened, with its metadata: the path is canonical.
    File(File, Metadata),
    /// Missing, or not to be opened: the answer.
    Refused(Refusal),
    /// A symlink on the way, or no `openat2`: canonicalize instead.
    SlowPath,
}

/// Set once `openat2` turns out to be missing (a kernel before 5.6, or a
/// seccomp filter that refuses it), so it is not tried on every request.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// Opens `path` read-only if no component of it is a symlink. Non-blocking,
/// so that a FIFO cannot hold the open, as nginx opens files; reads of a
/// regular file ignore the flag.
fn open_without_symlinks(path: &Path) -> Opened {
    use rustix::fs::{CWD, Mode, OFlags, ResolveFlags, openat2};
    use rustix::io::Errno;
    if NO_OPENAT2.load(Ordering::Relaxed) {
        return Opened::SlowPath;
    }
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK;
    let resolve = ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    match openat2(CWD, path, flags, Mode::empty(), resolve) {
        Ok(fd) => {
            let file = File::from(fd);
            match file.metadata() {
                Ok(meta) => Opened::File(file, meta),
                Err(e) => Opened::Refused(io_refusal(&e)),
            }
        }
        Err(Errno::LOOP | Errno::XDEV | Errno::AGAIN) => Opened::SlowPath,
        Err(Errno::NOSYS | Errno::PERM | Errno::INVAL) => {
            NO_OPENAT2.store(true, Ordering::Relaxed);
            Opened::SlowPath
        }
        Err(e) => Opened::Refused(io_refusal(&io::Error::from(e))),
    }
}

/// The precompressed sibling of a file [`resolve`] returned (`app.js.br`
/// for `app.js`, with `extension` `"br"`), opened, if one exists that
/// may be served. A missing sibling, the common case, costs one failed
/// `openat2`.
pub fn sibling(
    root: &Path,
    file: &Path,
    extension: &str,
    policy: &PathPolicy,
) -> Option<(PathBuf, File, Metadata)> {
    let mut name = file.file_name()?.to_owned();
    name.push(".");
    name.push(extension);
    open_known(root, file.with_file_name(name), policy)
}

/// The canonical form of `joined` (a path under `root`) and its metadata,
/// if the policy lets it be served: inside the root (unless symlinks out
/// are followed), and no dot-name on the way unless hidden files are.
fn contained(
    root: &Path,
    joined: &Path,
    policy: &PathPolicy,
) -> Result<(PathBuf, Metadata), Refusal> {
    let canonical = fs::canonicalize(joined).map_err(|e| io_refusal(&e))?;
    // `joined` has no `.` or `..`: if it is not canonical, a symlink was
    // on the way.
    if policy.symlinks == Symlinks::Never && canonical != joined {
        return Err(Refusal::Forbidden);
    }
    match canonical.strip_prefix(root) {
        Ok(under_root) => {
            if !policy.hidden && under_root.components().any(|c| is_dot_name(c.as_os_str())) {
                return Err(Refusal::NotFound);
            }
        }
        Err(_) if policy.symlinks != Symlinks::Any => return Err(Refusal::Forbidden),
        // Outside the root on purpose: its parents are the operator's
        // business (a home directory's `.local`), its own name is not.
        Err(_) => {
            if !policy.hidden && canonical.file_name().is_some_and(is_dot_name) {
                return Err(Refusal::NotFound);
            }
        }
    }
    let meta = fs::metadata(&canonical).map_err(|e| io_refusal(&e))?;
    Ok((canonical, meta))
}

/// The `Location` for a directory asked for without its trailing slash:
/// `raw_path` with one `/` appended and its leading slashes collapsed.
///
/// Appending a slash to the raw path is not enough: `//evil.com` would
/// become `//evil.com/`, which a browser reads as another host (an open
/// redirect). Leading `\` are collapsed too, since browsers read `/\` as
/// `//`, and controls, spaces, `\`, `?`, `#` and non-ASCII are
/// percent-encoded, so the result is always a valid header value and
/// always a path on this host.
///
/// ```
/// use sockit::http::path::redirect_location;
/// assert_eq!(redirect_location("/docs"), "/docs/");
/// assert_eq!(redirect_location("//evil.com"), "/evil.com/");
/// assert_eq!(redirect_location("/\\evil.com"), "/evil.com/");
/// ```
pub fn redirect_location(raw_path: &str) -> String {
    /// Bytes that must not reach a `Location` as they are.
    const ESCAPE: &AsciiSet = &CONTROLS.add(b' ').add(b'\\').add(b'?').add(b'#').add(b'"');
    let rest = raw_path.trim_start_matches(['/', '\\']);
    let mut location = String::with_capacity(rest.len() + 2);
    location.push('/');
    location.extend(utf8_percent_encode(rest, ESCAPE));
    if !location.ends_with('/') {
        location.push('/');
    }
    location
}

/// One raw path segment, percent-decoded. `percent_decode` alone passes a
/// stray `%` through unchanged; SPEC 4 wants that refused, so the escapes
/// are checked first.
fn decode_segment(raw: &str) -> Result<String, Refusal> {
    let bytes = raw.as_bytes();
    let mut i = 0;
    while let Some(offset) = bytes[i..].iter().position(|&b| b == b'%') {
        let at = i + offset;
        match bytes.get(at + 1..at + 3) {
            Some([hi, lo]) if hi.is_ascii_hexdigit() && lo.is_ascii_hexdigit() => i = at + 3,
            _ => return Err(Refusal::BadRequest),
        }
    }
    let decoded = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| Refusal::BadRequest)?;
    if decoded.contains('\0') {
        return Err(Refusal::BadRequest);
    }
    Ok(decoded.into_owned())
}

/// A dotfile or dot-directory name (`.` and `..` never reach here).
fn is_dot_name(name: &std::ffi::OsStr) -> bool {
    name.as_encoded_bytes().first() == Some(&b'.')
}

/// A failed `canonicalize` or `metadata`: missing, not a directory, a
/// symlink loop, a name too long are all "not found"; no permission is
/// nginx's 403.
fn io_refusal(error: &io::Error) -> Refusal {
    match error.kind() {
        io::ErrorKind::PermissionDenied => Refusal::Forbidden,
        _ => Refusal::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A root and a directory beside it, removed on drop:
    ///
    /// ```text
    /// root/a.txt  root/index.html  root/café.txt  root/sub/b.txt
    /// root/.secret  root/.hiddendir/c.txt
    /// root/link_in -> a.txt          root/link_sub -> sub
    /// root/link_out -> outside/file.txt   root/dir_out -> outside
    /// root/visible -> .secret        root/visible_dir -> .hiddendir
    /// root/.link_out -> outside/file.txt   outside/file.txt
    /// ```
    struct Fixture {
        base: PathBuf,
        root: PathBuf,
        outside: PathBuf,
    }

    impl Fixture {
        fn new(name: &str) -> Fixture {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let base = std::env::temp_dir().join(format!(
                "sockit-http-path-{}-{name}-{n}",
                std::process::id()
            ));
            let _ = fs::remove_dir_all(&base);
            let root = base.join("root");
            let outside = base.join("outside");
            for dir in [root.join("sub"), root.join(".hiddendir"), outside.clone()] {
                fs::create_dir_all(dir).unwrap();
            }
            for (file, text) in [
                ("a.txt", "a"),
                ("index.html", "<p>hi</p>"),
                ("café.txt", "café"),
                ("sub/b.txt", "b"),
                (".secret", "secret"),
                (".hiddendir/c.txt", "c"),
            ] {
                fs::write(root.join(file), text).unwrap();
            }
            fs::write(outside.join("file.txt"), "outside").unwrap();
            #[cfg(unix)]
            {
                use std::os::unix::fs::symlink;
                symlink("a.txt", root.join("link_in")).unwrap();
                symlink("sub", root.join("link_sub")).unwrap();
                symlink(outside.join("file.txt"), root.join("link_out")).unwrap();
                symlink(outside.join("file.txt"), root.join(".link_out")).unwrap();
                symlink(&outside, root.join("dir_out")).unwrap();
                symlink(".secret", root.join("visible")).unwrap();
                symlink(".hiddendir", root.join("visible_dir")).unwrap();
            }
            let root = root.canonicalize().unwrap();
            let outside = outside.canonicalize().unwrap();
            Fixture {
                base,
                root,
                outside,
            }
        }

        fn resolve(&self, raw: &str) -> Result<Target, Refusal> {
            resolve(&self.root, raw, &PathPolicy::default())
        }

        fn resolve_with(&self, raw: &str, policy: PathPolicy) -> Result<Target, Refusal> {
            resolve(&self.root, raw, &policy)
        }

        /// The path of a served file, or a panic naming what came instead.
        fn file(&self, raw: &str, policy: PathPolicy) -> PathBuf {
            match resolve(&self.root, raw, &policy) {
                Ok(Target::File { path, meta, .. }) => {
                    assert_eq!(meta.len(), fs::metadata(&path).unwrap().len());
                    path
                }
                other => panic!("{raw:?}: expected a file, got {other:?}"),
            }
        }

        fn refused(&self, raw: &str) -> Refusal {
            match self.resolve(raw) {
                Err(refusal) => refusal,
                Ok(target) => panic!("{raw:?}: expected a refusal, got {target:?}"),
            }
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.base);
        }
    }

    const DEFAULT: PathPolicy = PathPolicy {
        hidden: false,
        symlinks: Symlinks::Inside,
    };
    const HIDDEN: PathPolicy = PathPolicy {
        hidden: true,
        symlinks: Symlinks::Inside,
    };
    const FOLLOW_OUT: PathPolicy = PathPolicy {
        hidden: false,
        symlinks: Symlinks::Any,
    };
    const NO_LINKS: PathPolicy = PathPolicy {
        hidden: false,
        symlinks: Symlinks::Never,
    };

    #[cfg(unix)]
    #[test]
    fn no_symlinks_at_all_when_told() {
        let fx = Fixture::new("no-links");
        for raw in [
            "/link_in",
            "/link_sub/b.txt",
            "/link_out",
            "/dir_out/file.txt",
        ] {
            assert_eq!(
                fx.resolve_with(raw, NO_LINKS).unwrap_err(),
                Refusal::Forbidden,
                "{raw:?}"
            );
        }
        assert_eq!(fx.file("/a.txt", NO_LINKS), fx.root.join("a.txt"));
        assert_eq!(fx.file("/sub/b.txt", NO_LINKS), fx.root.join("sub/b.txt"));
        // Nor for the known names beside a file.
        std::os::unix::fs::symlink(fx.root.join("a.txt"), fx.root.join("sub/b.txt.gz")).unwrap();
        assert!(sibling(&fx.root, &fx.root.join("sub/b.txt"), "gz", &NO_LINKS).is_none());
        assert!(sibling(&fx.root, &fx.root.join("sub/b.txt"), "gz", &DEFAULT).is_some());
    }

    #[test]
    fn plain_files_resolve_to_their_canonical_path() {
        let fx = Fixture::new("plain");
        assert_eq!(fx.file("/a.txt", DEFAULT), fx.root.join("a.txt"));
        assert_eq!(fx.file("/sub/b.txt", DEFAULT), fx.root.join("sub/b.txt"));
        assert_eq!(fx.file("/caf%C3%A9.txt", DEFAULT), fx.root.join("café.txt"));
        assert_eq!(fx.file("/caf%c3%a9.txt", DEFAULT), fx.root.join("café.txt"));
    }

    #[test]
    fn paths_over_max_path_are_too_long() {
        let fx = Fixture::new("long");
        let long = format!("/{}", "a".repeat(MAX_PATH));
        assert_eq!(fx.refused(&long), Refusal::TooLong);
        // Exactly MAX_PATH is looked up (and the name is too long: 404).
        assert_eq!(fx.refused(&long[..MAX_PATH]), Refusal::NotFound);
        let long_dots = format!("/{}", "../".repeat(MAX_PATH / 3 + 1));
        assert_eq!(fx.refused(&long_dots), Refusal::TooLong);
    }

    #[test]
    fn a_path_must_start_with_a_slash() {
        let fx = Fixture::new("slash");
        for raw in [
            "",
            "a.txt",
            "*",
            "http://example.com/a.txt",
            ".",
            "%2fa.txt",
        ] {
            assert_eq!(fx.refused(raw), Refusal::BadRequest, "{raw:?}");
        }
    }

    #[test]
    fn bad_percent_encoding_utf8_and_nul_are_bad_requests() {
        let fx = Fixture::new("bad");
        for raw in [
            "/%",
            "/%2",
            "/a%",
            "/%zz",
            "/a%g1",
            "/%%41",
            "/%ff",
            "/%c3",
            "/%C3%28",
            "/%00",
            "/a.txt%00",
            "/a.txt%00.html",
            "/sub/%00/b.txt",
        ] {
            assert_eq!(fx.refused(raw), Refusal::BadRequest, "{raw:?}");
        }
    }

    #[test]
    fn encoded_slashes_and_any_backslash_are_forbidden() {
        let fx = Fixture::new("slashes");
        for raw in [
            "/sub%2fb.txt",
            "/sub%2Fb.txt",
            "/%2f",
            "/%2fetc%2fpasswd",
            "/sub%5cb.txt",
            "/%5C",
            "/sub\\b.txt",
            "/\\etc\\passwd",
            "/..\\a.txt",
        ] {
            assert_eq!(fx.refused(raw), Refusal::Forbidden, "{raw:?}");
        }
    }

    #[test]
    fn dot_dot_in_any_spelling_is_forbidden() {
        let fx = Fixture::new("dotdot");
        for raw in [
            "/..",
            "/../",
            "/../outside/file.txt",
            "/sub/../a.txt",
            "/sub/..",
            "/%2e%2e",
            "/%2E%2E/outside/file.txt",
            "/.%2e/a.txt",
            "/%2e./a.txt",
            "/sub/%2e%2e/%2e%2e/etc/passwd",
            // A dotfile first, `..` after: still a 403, not a 404.
            "/.secret/../a.txt",
        ] {
            assert_eq!(fx.refused(raw), Refusal::Forbidden, "{raw:?}");
        }
    }

    #[test]
    fn empty_and_dot_segments_stay_under_the_root() {
        let fx = Fixture::new("empty");
        assert_eq!(fx.file("//a.txt", DEFAULT), fx.root.join("a.txt"));
        assert_eq!(
            fx.file("/./sub/./b.txt", DEFAULT),
            fx.root.join("sub/b.txt")
        );
        assert_eq!(fx.file("/%2e/a.txt", DEFAULT), fx.root.join("a.txt"));
        assert_eq!(fx.file("/sub//b.txt", DEFAULT), fx.root.join("sub/b.txt"));
        // An absolute path is a path under the root, never the system's.
        for raw in ["//etc/passwd", "///etc/passwd", "/etc/passwd"] {
            assert_eq!(fx.refused(raw), Refusal::NotFound, "{raw:?}");
        }
    }

    #[test]
    fn dotfiles_are_not_found_without_the_hidden_policy() {
        let fx = Fixture::new("hidden");
        for raw in [
            "/.secret",
            "/%2esecret",
            "/.hiddendir",
            "/.hiddendir/",
            "/.hiddendir/c.txt",
            "/sub/.nothing",
        ] {
            assert_eq!(fx.refused(raw), Refusal::NotFound, "{raw:?}");
        }
        assert_eq!(fx.file("/.secret", HIDDEN), fx.root.join(".secret"));
        assert_eq!(fx.file("/%2esecret", HIDDEN), fx.root.join(".secret"));
        assert_eq!(
            fx.file("/.hiddendir/c.txt", HIDDEN),
            fx.root.join(".hiddendir/c.txt")
        );
        assert!(matches!(
            fx.resolve_with("/.hiddendir/", HIDDEN),
            Ok(Target::Dir {
                slash_redirect: false,
                ..
            })
        ));
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_inside_the_root_are_followed() {
        let fx = Fixture::new("link-in");
        assert_eq!(fx.file("/link_in", DEFAULT), fx.root.join("a.txt"));
        assert_eq!(
            fx.file("/link_sub/b.txt", DEFAULT),
            fx.root.join("sub/b.txt")
        );
        match fx.resolve("/link_sub") {
            Ok(Target::Dir {
                path,
                slash_redirect: true,
            }) => assert_eq!(path, fx.root.join("sub")),
            other => panic!("expected the sub directory, got {other:?}"),
        }
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_leaving_the_root_are_forbidden_by_default() {
        let fx = Fixture::new("link-out");
        for raw in ["/link_out", "/dir_out", "/dir_out/", "/dir_out/file.txt"] {
            assert_eq!(fx.refused(raw), Refusal::Forbidden, "{raw:?}");
        }
        // A missing file behind an outside link is not found, not served.
        assert_eq!(fx.refused("/dir_out/nope"), Refusal::NotFound);

        let out = fx.outside.join("file.txt");
        assert_eq!(fx.file("/link_out", FOLLOW_OUT), out);
        assert_eq!(fx.file("/dir_out/file.txt", FOLLOW_OUT), out);
        // Following out does not lift the hidden rule on the requested name.
        assert_eq!(
            fx.resolve_with("/.link_out", FOLLOW_OUT).unwrap_err(),
            Refusal::NotFound
        );
    }

    #[cfg(unix)]
    #[test]
    fn an_index_or_sibling_linking_out_is_passed_over() {
        let fx = Fixture::new("known-names");
        let policy = PathPolicy::default();
        fs::create_dir(fx.root.join("site")).unwrap();
        std::os::unix::fs::symlink(fx.outside.join("file.txt"), fx.root.join("site/index.html"))
            .unwrap();
        std::os::unix::fs::symlink(fx.outside.join("file.txt"), fx.root.join("a.txt.gz")).unwrap();
        fs::write(fx.root.join("a.txt.br"), "br").unwrap();
        let site = fx.root.join("site");
        assert!(index(&fx.root, &site, &policy).is_none());
        assert!(sibling(&fx.root, &fx.root.join("a.txt"), "gz", &policy).is_none());
        let (path, _, meta) = sibling(&fx.root, &fx.root.join("a.txt"), "br", &policy).unwrap();
        assert_eq!((path, meta.len()), (fx.root.join("a.txt.br"), 2));
        // Followed out on purpose, they are served.
        assert!(index(&fx.root, &site, &FOLLOW_OUT).is_some());
        // An index inside is found, through a link inside too.
        std::os::unix::fs::symlink(fx.root.join("index.html"), fx.root.join("sub/index.html"))
            .unwrap();
        let (path, ..) = index(&fx.root, &fx.root.join("sub"), &policy).unwrap();
        assert_eq!(path, fx.root.join("index.html"));
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_is_not_found_and_never_blocks() {
        let fx = Fixture::new("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(fx.root.join("pipe"))
            .status()
            .is_ok_and(|s| s.success());
        assert!(made, "mkfifo");
        // A blocking open would wait here for a writer forever.
        assert_eq!(fx.refused("/pipe"), Refusal::NotFound);
    }

    #[cfg(unix)]
    #[test]
    fn a_visible_symlink_to_a_dotfile_is_not_found() {
        let fx = Fixture::new("link-hidden");
        for raw in ["/visible", "/visible_dir", "/visible_dir/c.txt"] {
            assert_eq!(fx.refused(raw), Refusal::NotFound, "{raw:?}");
        }
        assert_eq!(fx.file("/visible", HIDDEN), fx.root.join(".secret"));
        assert_eq!(
            fx.file("/visible_dir/c.txt", HIDDEN),
            fx.root.join(".hiddendir/c.txt")
        );
    }

    #[test]
    fn missing_files_and_files_as_directories_are_not_found() {
        let fx = Fixture::new("missing");
        for raw in ["/nope", "/sub/nope", "/a.txt/", "/a.txt/x", "/a.txt/."] {
            assert_eq!(fx.refused(raw), Refusal::NotFound, "{raw:?}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn neither_file_nor_directory_is_not_found() {
        let fx = Fixture::new("socket");
        let _listener = std::os::unix::net::UnixListener::bind(fx.root.join("sock")).unwrap();
        assert_eq!(fx.refused("/sock"), Refusal::NotFound);
    }

    #[test]
    fn directories_say_whether_they_need_the_slash_redirect() {
        let fx = Fixture::new("dir");
        for (raw, path, redirect) in [
            ("/", fx.root.clone(), false),
            ("//", fx.root.clone(), false),
            ("/sub", fx.root.join("sub"), true),
            ("/sub/", fx.root.join("sub"), false),
            ("//sub", fx.root.join("sub"), true),
            ("/sub/.", fx.root.join("sub"), true),
        ] {
            match fx.resolve(raw) {
                Ok(Target::Dir {
                    path: got,
                    slash_redirect,
                }) => {
                    assert_eq!(got, path, "{raw:?}");
                    assert_eq!(slash_redirect, redirect, "{raw:?}");
                }
                other => panic!("{raw:?}: expected a directory, got {other:?}"),
            }
        }
    }

    #[test]
    fn redirect_locations_are_paths_on_this_host() {
        for (raw, location) in [
            ("/sub", "/sub/"),
            ("/sub/", "/sub/"),
            ("", "/"),
            ("/", "/"),
            ("//evil.com", "/evil.com/"),
            ("///evil.com/x", "/evil.com/x/"),
            ("/\\evil.com", "/evil.com/"),
            ("\\/\\evil.com", "/evil.com/"),
            ("/a b", "/a%20b/"),
            ("/\t/evil.com", "/%09/evil.com/"),
            ("/a\\b", "/a%5Cb/"),
            ("/caf%C3%A9", "/caf%C3%A9/"),
            ("/café", "/caf%C3%A9/"),
            ("/a?b#c", "/a%3Fb%23c/"),
        ] {
            let got = redirect_location(raw);
            assert_eq!(got, location, "{raw:?}");
            assert!(!got.starts_with("//"), "{raw:?}");
            assert!(got.bytes().all(|b| b.is_ascii_graphic()), "{raw:?}");
        }
    }

    #[test]
    fn refusals_carry_their_status_codes() {
        assert_eq!(Refusal::BadRequest.status(), 400);
        assert_eq!(Refusal::Forbidden.status(), 403);
        assert_eq!(Refusal::NotFound.status(), 404);
        assert_eq!(Refusal::TooLong.status(), 414);
    }

    /// Every short path over an alphabet of troublemakers: no panic, and
    /// nothing outside the root or hidden is ever answered.
    #[test]
    fn short_paths_never_escape_or_panic() {
        let fx = Fixture::new("exhaustive");
        let alphabet = [
            "/", ".", "%", "2e", "2f", "5c", "00", "ff", "\\", "a.txt", "sub", "link_out",
            "dir_out", "visible", ".secret", "é",
        ];
        let mut paths = vec![String::new()];
        for _ in 0..3 {
            let mut longer = Vec::new();
            for path in &paths {
                for piece in alphabet {
                    longer.push(format!("{path}{piece}"));
                }
            }
            paths.extend(longer);
        }
        for path in paths {
            for raw in [path.clone(), format!("/{path}")] {
                for policy in [DEFAULT, HIDDEN] {
                    let path = match fx.resolve_with(&raw, policy) {
                        Ok(Target::File { path, .. } | Target::Dir { path, .. }) => path,
                        Err(_) => continue,
                    };
                    let under = path
                        .strip_prefix(&fx.root)
                        .unwrap_or_else(|_| panic!("{raw:?} escaped the root: {}", path.display()));
                    if !policy.hidden {
                        assert!(
                            !under.components().any(|c| is_dot_name(c.as_os_str())),
                            "{raw:?} served a dotfile: {}",
                            path.display()
                        );
                    }
                }
            }
        }
    }
}
