//! Crash-safe file writes: a file is either its old complete content or its new complete
//! content, never a torn mix (power loss, kill, full disk).

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

/// Writes `bytes` to `path` atomically: a temporary file in the same folder is written and
/// flushed to disk, then renamed over `path`, then the folder entry is flushed.
///
/// On any error (a full disk included) the temporary file is removed and `path` keeps its old
/// content. The error is the system's, with its kind; callers name `path` in theirs (so that
/// a message names it once).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fail_point(path)?;
        fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Test hook: `OGM_FAIL_WRITE=<file name>` makes the write of that file fail after its
/// temporary copy is complete and before the rename, which is where a crash would hurt.
fn fail_point(path: &Path) -> io::Result<()> {
    match std::env::var_os("OGM_FAIL_WRITE") {
        Some(v) if path.file_name() == Some(v.as_os_str()) => Err(io::Error::other(
            "simulated crash before rename (OGM_FAIL_WRITE)",
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("ogm-fsio-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.bin");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two two");
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        let e = write_atomic(&dir.join("missing/x.bin"), b"x").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
        fs::remove_dir_all(&dir).ok();
    }
}
