//! Config files written for one spawned gateway and removed afterwards.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A YAML file in the system temp directory, deleted on drop.
#[derive(Debug)]
pub(crate) struct ConfigFile {
    path: PathBuf,
}

impl ConfigFile {
    /// Writes `contents` to a fresh, uniquely named file.
    pub(crate) fn write(contents: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let name =
            format!("gatehouse-test-{}-{}-{nanos}.yaml", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let path = std::env::temp_dir().join(name);
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("writing config file {}: {e}", path.display()));
        Self { path }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The SQLite file a gateway started with this config uses by default.
    pub(crate) fn database_path(&self) -> PathBuf {
        self.path.with_extension("db")
    }

    /// Replaces the contents. The new text goes to a sibling file first and
    /// is renamed over the old one, so a reader never sees half a file.
    pub(crate) fn rewrite(&self, contents: &str) {
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".new");
        let tmp = PathBuf::from(tmp);
        std::fs::write(&tmp, contents).unwrap_or_else(|e| panic!("writing config file {}: {e}", tmp.display()));
        std::fs::rename(&tmp, &self.path)
            .unwrap_or_else(|e| panic!("renaming {} to {}: {e}", tmp.display(), self.path.display()));
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let db = self.database_path();
        for suffix in ["", "-wal", "-shm"] {
            let mut p = db.clone().into_os_string();
            p.push(suffix);
            let _ = std::fs::remove_file(p);
        }
    }
}
