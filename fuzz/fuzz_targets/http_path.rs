//! Arbitrary request paths against a small real root (files, a dotfile, a
//! dot-directory, symlinks in and out): `resolve` refuses, or answers with
//! a path whose canonical form lies under the canonical root and, without
//! `--hidden`, has no dot component under it. Never a panic.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sockit::http::path::{PathPolicy, Symlinks, Target, redirect_location, resolve};

/// The root, built once per fuzzing process under the temp directory.
fn root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let base =
            std::env::temp_dir().join(format!("sockit-fuzz-http-path-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let root = base.join("root");
        let outside = base.join("outside");
        for dir in [root.join("sub"), root.join(".hiddendir"), outside.clone()] {
            std::fs::create_dir_all(dir).unwrap();
        }
        for file in [
            "a.txt",
            "index.html",
            "sub/b.txt",
            ".secret",
            ".hiddendir/c.txt",
        ] {
            std::fs::write(root.join(file), file).unwrap();
        }
        std::fs::write(outside.join("file.txt"), "outside").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::symlink;
            symlink("a.txt", root.join("link_in")).unwrap();
            symlink(".secret", root.join("visible")).unwrap();
            symlink(outside.join("file.txt"), root.join("link_out")).unwrap();
            symlink(&outside, root.join("dir_out")).unwrap();
        }
        root.canonicalize().unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let raw = String::from_utf8_lossy(data);
    let root = root();
    for hidden in [false, true] {
        let policy = PathPolicy {
            hidden,
            symlinks: Symlinks::Inside,
        };
        let path = match resolve(root, &raw, &policy) {
            Ok(Target::File { path, .. } | Target::Dir { path, .. }) => path,
            Err(_) => continue,
        };
        let canonical = path.canonicalize().unwrap();
        let under = canonical
            .strip_prefix(root)
            .unwrap_or_else(|_| panic!("{raw:?} escaped the root: {}", canonical.display()));
        if !hidden {
            assert!(
                !under
                    .components()
                    .any(|c| c.as_os_str().as_encoded_bytes().starts_with(b".")),
                "{raw:?} served a dotfile: {}",
                canonical.display()
            );
        }
    }
    let location = redirect_location(&raw);
    assert!(
        location.starts_with('/') && !location.starts_with("//"),
        "{location:?}"
    );
    assert!(
        location.bytes().all(|b| b.is_ascii_graphic()),
        "{location:?}"
    );
});
