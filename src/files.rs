//! Which of a checkpoint's files are there. Only regular files are read: a FIFO would block the
//! read forever, and a FIFO, device, directory or symlink loop where a file should be is an
//! error naming it, never a hang or a silent fall-back to another file.

use std::path::Path;

use crate::error::{Error, Result};

/// Whether `path` is a regular file (following symlinks); `false` when nothing is there; an
/// error when something else is, or it cannot be looked at.
pub fn present(path: &Path) -> Result<bool> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => Ok(true),
        Ok(_) => Err(Error::NotAFile(path.to_path_buf())),
        // A dangling symlink is there, pointing at nothing.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match std::fs::symlink_metadata(path)
        {
            Ok(_) => Err(io(e)),
            Err(_) => Ok(false),
        },
        Err(e) => Err(io(e)),
    }
}
