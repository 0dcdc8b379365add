//! The file watcher's persisted progress: for each file, its identity (device and inode) and
//! how far the server has acknowledged it. Written to a temporary file beside the state file,
//! flushed to disk and renamed over it, so a crash leaves the old state or the new one, never
//! half of either.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::IngestError;

/// The state file's content.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct WatchState {
    #[serde(default)]
    pub files: Vec<FileEntry>,
}

/// One file's progress. A list rather than a map by path: after a rotation the old file and
/// its successor may both be known under the same name for a while.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FileEntry {
    /// The name the file was last seen under.
    pub path: PathBuf,
    pub dev: u64,
    pub inode: u64,
    /// Text files: the byte offset after the last acknowledged line. EVTX files: the number
    /// of acknowledged records.
    pub offset: u64,
    #[serde(default)]
    pub evtx: bool,
    /// EVTX files: every record is acknowledged.
    #[serde(default)]
    pub done: bool,
}

fn state_error(path: &Path, message: impl std::fmt::Display) -> IngestError {
    IngestError::State { path: path.to_owned(), message: message.to_string() }
}

/// Reads the state file; None when there is none yet.
pub(crate) fn load(path: &Path) -> Result<Option<WatchState>, IngestError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| state_error(path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(state_error(path, e)),
    }
}

/// The temporary file a new state is written to before it replaces the old one.
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

/// Replaces the state file atomically (temporary file, fsync, rename).
pub(crate) fn save(path: &Path, state: &WatchState) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(state).map_err(std::io::Error::other)?;
    let temp = temp_path(path);
    {
        let mut f = std::fs::File::create(&temp)?;
        f.write_all(&json)?;
        f.sync_all()?;
    }
    std::fs::rename(&temp, path)?;
    // The rename itself is durable once the folder is; not every platform can open one.
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(if dir.as_os_str().is_empty() { Path::new(".") } else { dir })
    {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_and_loads_atomically() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("state.json");
        assert!(load(&path).expect("absent is fine").is_none());
        let state = WatchState {
            files: vec![FileEntry {
                path: "/var/log/a.log".into(),
                dev: 1,
                inode: 2,
                offset: 3,
                evtx: false,
                done: false,
            }],
        };
        save(&path, &state).expect("save");
        assert!(!temp_path(&path).exists());
        let back = load(&path).expect("load").expect("present");
        assert_eq!(back.files, state.files);
        std::fs::write(&path, b"{not json").expect("write");
        assert!(matches!(load(&path), Err(IngestError::State { .. })));
    }
}
