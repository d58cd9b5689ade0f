//! The filesystem as a disk with a volatile cache in front of it.
//!
//! Every file and directory has two states: what a program sees now (the
//! page cache) and what survives a power cut (the disk). A file's data
//! reaches the disk only through its own fsync; a directory's entries
//! (creations, renames, removals) only through the directory's fsync. A
//! file's fsync does not make its own new name durable: that takes an fsync
//! of the directory holding the name, as POSIX says and real filesystems do
//! after a crash. [`Model::cut`] forgets everything not made durable, and
//! can tear unsynced writes at a page boundary.
//!
//! File data lives in the backing directory, one file per inode; the
//! unsynced writes and the namespace live in this process, which plays the
//! disk: it survives the power cuts it simulates.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    ffi::{OsStr, OsString},
    fs::{File, OpenOptions},
    os::unix::fs::FileExt,
    path::PathBuf,
};

/// An inode number; 1 is the root directory.
pub type Ino = u64;

/// The root directory's inode.
pub const ROOT: Ino = 1;

/// The page size torn writes are cut at.
pub const PAGE: u64 = 4096;

/// Why an operation failed, as the filesystem would say it (an errno).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FsError {
    /// No such file or directory (ENOENT).
    #[error("no such file or directory")]
    NotFound,
    /// The name exists (EEXIST).
    #[error("file exists")]
    Exists,
    /// A directory that is not empty (ENOTEMPTY).
    #[error("directory not empty")]
    NotEmpty,
    /// A file where a directory was needed (ENOTDIR).
    #[error("not a directory")]
    NotDir,
    /// A directory where a file was needed (EISDIR).
    #[error("is a directory")]
    IsDir,
    /// The quota is used up (ENOSPC).
    #[error("no space left on device")]
    NoSpace,
    /// The backing directory failed (EIO).
    #[error("backing store: {0}")]
    Io(String),
}

fn io(error: std::io::Error) -> FsError {
    FsError::Io(error.to_string())
}

/// A change to a file's data not yet made durable.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Write { offset: u64, data: Vec<u8> },
    Truncate(u64),
}

#[derive(Debug, Default)]
struct FileNode {
    /// Bytes on the disk (in the backing file).
    durable_len: u64,
    /// Bytes a program sees now.
    len: u64,
    /// Unsynced changes, in order.
    pending: Vec<Op>,
}

#[derive(Debug, Default)]
struct DirNode {
    /// The entries a program sees now.
    current: BTreeMap<OsString, Ino>,
    /// The entries on the disk.
    durable: BTreeMap<OsString, Ino>,
}

#[derive(Debug)]
enum Node {
    File(FileNode),
    Dir(DirNode),
}

/// What [`Model::cut`] does with unsynced writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Every unsynced change is lost.
    Clean,
    /// Of each file's unsynced writes, a prefix survives, cut at a page
    /// boundary; `seed` makes it repeatable.
    Torn {
        /// Seed of the choice of prefixes.
        seed: u64,
    },
}

/// What kind of node an inode is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
}

/// The filesystem's state: namespace, sizes and unsynced writes in memory,
/// durable file data in `backing`.
#[derive(Debug)]
pub struct Model {
    backing: PathBuf,
    nodes: HashMap<Ino, Node>,
    next_ino: Ino,
    /// fsync answers OK without making anything durable (to prove that a
    /// checker notices lost data).
    fsync_lies: bool,
    /// Most bytes the disk may hold (durable plus pending), if bounded.
    quota: Option<u64>,
}

impl Model {
    /// An empty filesystem whose file data goes to `backing` (which must
    /// exist and be empty).
    pub fn new(backing: PathBuf) -> Self {
        let mut nodes = HashMap::new();
        nodes.insert(ROOT, Node::Dir(DirNode::default()));
        Self {
            backing,
            nodes,
            next_ino: ROOT + 1,
            fsync_lies: false,
            quota: None,
        }
    }

    /// Makes fsync answer OK without persisting anything (or stop doing so).
    pub fn set_fsync_lies(&mut self, lies: bool) {
        self.fsync_lies = lies;
    }

    /// Bounds the bytes of file data (durable and pending) the filesystem
    /// holds; writes beyond fail with [`FsError::NoSpace`].
    pub fn set_quota(&mut self, quota: Option<u64>) {
        self.quota = quota;
    }

    fn data_path(&self, ino: Ino) -> PathBuf {
        self.backing.join(ino.to_string())
    }

    fn dir(&self, ino: Ino) -> Result<&DirNode, FsError> {
        match self.nodes.get(&ino) {
            Some(Node::Dir(dir)) => Ok(dir),
            Some(Node::File(_)) => Err(FsError::NotDir),
            None => Err(FsError::NotFound),
        }
    }

    fn dir_mut(&mut self, ino: Ino) -> Result<&mut DirNode, FsError> {
        match self.nodes.get_mut(&ino) {
            Some(Node::Dir(dir)) => Ok(dir),
            Some(Node::File(_)) => Err(FsError::NotDir),
            None => Err(FsError::NotFound),
        }
    }

    fn file(&self, ino: Ino) -> Result<&FileNode, FsError> {
        match self.nodes.get(&ino) {
            Some(Node::File(file)) => Ok(file),
            Some(Node::Dir(_)) => Err(FsError::IsDir),
            None => Err(FsError::NotFound),
        }
    }

    fn file_mut(&mut self, ino: Ino) -> Result<&mut FileNode, FsError> {
        match self.nodes.get_mut(&ino) {
            Some(Node::File(file)) => Ok(file),
            Some(Node::Dir(_)) => Err(FsError::IsDir),
            None => Err(FsError::NotFound),
        }
    }

    /// The inode `name` in `parent` names now.
    pub fn lookup(&self, parent: Ino, name: &OsStr) -> Result<Ino, FsError> {
        self.dir(parent)?
            .current
            .get(name)
            .copied()
            .ok_or(FsError::NotFound)
    }

    /// What an inode is, if it exists.
    pub fn kind(&self, ino: Ino) -> Option<Kind> {
        match self.nodes.get(&ino)? {
            Node::File(_) => Some(Kind::File),
            Node::Dir(_) => Some(Kind::Dir),
        }
    }

    /// A file's size as programs see it now (0 for a directory).
    pub fn len(&self, ino: Ino) -> Result<u64, FsError> {
        match self.nodes.get(&ino) {
            Some(Node::File(file)) => Ok(file.len),
            Some(Node::Dir(_)) => Ok(0),
            None => Err(FsError::NotFound),
        }
    }

    /// The entries of a directory as programs see them now.
    pub fn entries(&self, ino: Ino) -> Result<Vec<(OsString, Ino)>, FsError> {
        Ok(self
            .dir(ino)?
            .current
            .iter()
            .map(|(name, ino)| (name.clone(), *ino))
            .collect())
    }

    fn add(&mut self, parent: Ino, name: &OsStr, node: Node) -> Result<Ino, FsError> {
        if self.dir(parent)?.current.contains_key(name) {
            return Err(FsError::Exists);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        if matches!(node, Node::File(_)) {
            File::create(self.data_path(ino)).map_err(io)?;
        }
        self.nodes.insert(ino, node);
        self.dir_mut(parent)?.current.insert(name.to_owned(), ino);
        Ok(ino)
    }

    /// Creates an empty file; its name is durable only after an fsync of
    /// `parent`.
    pub fn create(&mut self, parent: Ino, name: &OsStr) -> Result<Ino, FsError> {
        self.add(parent, name, Node::File(FileNode::default()))
    }

    /// Creates a directory; its name is durable only after an fsync of
    /// `parent`.
    pub fn mkdir(&mut self, parent: Ino, name: &OsStr) -> Result<Ino, FsError> {
        self.add(parent, name, Node::Dir(DirNode::default()))
    }

    /// Removes a file's name (now; on the disk after an fsync of `parent`).
    pub fn unlink(&mut self, parent: Ino, name: &OsStr) -> Result<(), FsError> {
        let ino = self.lookup(parent, name)?;
        self.file(ino)?;
        self.dir_mut(parent)?.current.remove(name);
        Ok(())
    }

    /// Removes an empty directory's name.
    pub fn rmdir(&mut self, parent: Ino, name: &OsStr) -> Result<(), FsError> {
        let ino = self.lookup(parent, name)?;
        if !self.dir(ino)?.current.is_empty() {
            return Err(FsError::NotEmpty);
        }
        self.dir_mut(parent)?.current.remove(name);
        Ok(())
    }

    /// Moves a name, replacing a file already there (now; on the disk after
    /// fsyncs of both directories).
    pub fn rename(
        &mut self,
        parent: Ino,
        name: &OsStr,
        new_parent: Ino,
        new_name: &OsStr,
    ) -> Result<(), FsError> {
        let ino = self.lookup(parent, name)?;
        self.dir(new_parent)?;
        if let Ok(existing) = self.lookup(new_parent, new_name) {
            if existing == ino {
                return Ok(());
            }
            match (self.kind(ino), self.kind(existing)) {
                (Some(Kind::File), Some(Kind::Dir)) => return Err(FsError::IsDir),
                (Some(Kind::Dir), Some(Kind::File)) => return Err(FsError::NotDir),
                (Some(Kind::Dir), Some(Kind::Dir)) if !self.dir(existing)?.current.is_empty() => {
                    return Err(FsError::NotEmpty);
                }
                _ => {}
            }
        }
        self.dir_mut(parent)?.current.remove(name);
        self.dir_mut(new_parent)?
            .current
            .insert(new_name.to_owned(), ino);
        Ok(())
    }

    /// Bytes of file data held now, durable and pending.
    fn used(&self) -> u64 {
        self.nodes
            .values()
            .map(|node| match node {
                Node::File(file) => {
                    file.durable_len.max(file.len)
                        + file
                            .pending
                            .iter()
                            .map(|op| match op {
                                Op::Write { data, .. } => data.len() as u64,
                                Op::Truncate(_) => 0,
                            })
                            .sum::<u64>()
                }
                Node::Dir(_) => 0,
            })
            .sum()
    }

    /// The bytes the filesystem may hold and those still free (statfs): the
    /// quota when there is one, else 1 TiB.
    pub fn space(&self) -> (u64, u64) {
        let total = self.quota.unwrap_or(1 << 40);
        (total, total.saturating_sub(self.used()))
    }

    /// Writes `data` at `offset` (in the cache until the file's fsync).
    pub fn write(&mut self, ino: Ino, offset: u64, data: &[u8]) -> Result<(), FsError> {
        self.file(ino)?;
        if let Some(quota) = self.quota
            && self.used() + data.len() as u64 > quota
        {
            return Err(FsError::NoSpace);
        }
        let file = self.file_mut(ino)?;
        file.len = file.len.max(offset + data.len() as u64);
        file.pending.push(Op::Write {
            offset,
            data: data.to_vec(),
        });
        Ok(())
    }

    /// Sets a file's size (in the cache until the file's fsync).
    pub fn truncate(&mut self, ino: Ino, len: u64) -> Result<(), FsError> {
        let file = self.file_mut(ino)?;
        file.len = len;
        file.pending.push(Op::Truncate(len));
        Ok(())
    }

    /// Up to `size` bytes at `offset`, as programs see them now.
    pub fn read(&self, ino: Ino, offset: u64, size: usize) -> Result<Vec<u8>, FsError> {
        let file = self.file(ino)?;
        let end = file.len.min(offset.saturating_add(size as u64));
        if offset >= end {
            return Ok(Vec::new());
        }
        let mut buffer = vec![0u8; (end - offset) as usize];
        let on_disk = file.durable_len.min(end);
        if offset < on_disk {
            let backing = File::open(self.data_path(ino)).map_err(io)?;
            backing
                .read_exact_at(&mut buffer[..(on_disk - offset) as usize], offset)
                .map_err(io)?;
        }
        for op in &file.pending {
            match op {
                Op::Write { offset: at, data } => {
                    let (start, stop) = ((*at).max(offset), (at + data.len() as u64).min(end));
                    if start < stop {
                        buffer[(start - offset) as usize..(stop - offset) as usize]
                            .copy_from_slice(&data[(start - at) as usize..(stop - at) as usize]);
                    }
                }
                Op::Truncate(len) => {
                    if *len < end {
                        let from = (*len).max(offset);
                        buffer[(from - offset) as usize..].fill(0);
                    }
                }
            }
        }
        Ok(buffer)
    }

    /// Makes a file's data, or a directory's entries, durable.
    pub fn fsync(&mut self, ino: Ino) -> Result<(), FsError> {
        if self.fsync_lies {
            return match self.nodes.get(&ino) {
                Some(_) => Ok(()),
                None => Err(FsError::NotFound),
            };
        }
        let path = self.data_path(ino);
        match self.nodes.get_mut(&ino) {
            Some(Node::Dir(dir)) => {
                dir.durable = dir.current.clone();
                Ok(())
            }
            Some(Node::File(file)) => {
                let ops = std::mem::take(&mut file.pending);
                let len = file.len;
                persist(&path, &ops, Some(len))?;
                file.durable_len = len;
                Ok(())
            }
            None => Err(FsError::NotFound),
        }
    }

    /// The power goes: everything not made durable is forgotten (with
    /// [`Cut::Torn`], a page-aligned prefix of each file's unsynced writes
    /// may survive), and inodes no durable name reaches are deleted.
    pub fn cut(&mut self, cut: Cut) -> Result<CutReport, FsError> {
        let mut report = CutReport::default();
        let mut seed = match cut {
            Cut::Clean => 0,
            Cut::Torn { seed } => seed,
        };
        let mut inos: Vec<Ino> = self.nodes.keys().copied().collect();
        inos.sort_unstable();
        for ino in inos {
            let path = self.data_path(ino);
            match self.nodes.get_mut(&ino) {
                Some(Node::Dir(dir)) => {
                    if dir.current != dir.durable {
                        report.directories_reverted += 1;
                    }
                    dir.current = dir.durable.clone();
                }
                Some(Node::File(file)) => {
                    let ops = std::mem::take(&mut file.pending);
                    if ops.is_empty() {
                        continue;
                    }
                    report.files_reverted += 1;
                    let kept = match cut {
                        Cut::Clean => Vec::new(),
                        Cut::Torn { .. } => torn_prefix(&ops, next_random(&mut seed)),
                    };
                    if !kept.is_empty() {
                        report.torn_bytes_kept += kept
                            .iter()
                            .map(|op| match op {
                                Op::Write { data, .. } => data.len() as u64,
                                Op::Truncate(_) => 0,
                            })
                            .sum::<u64>();
                        persist(&path, &kept, None)?;
                        file.durable_len = std::fs::metadata(&path).map_err(io)?.len();
                    }
                    file.len = file.durable_len;
                }
                None => {}
            }
        }
        // Inodes that no durable name reaches are gone.
        let mut reachable = BTreeSet::from([ROOT]);
        let mut stack = vec![ROOT];
        while let Some(ino) = stack.pop() {
            if let Some(Node::Dir(dir)) = self.nodes.get(&ino) {
                for child in dir.durable.values() {
                    if reachable.insert(*child) {
                        stack.push(*child);
                    }
                }
            }
        }
        let gone: Vec<Ino> = self
            .nodes
            .keys()
            .copied()
            .filter(|ino| !reachable.contains(ino))
            .collect();
        for ino in gone {
            if let Some(Node::File(_)) = self.nodes.remove(&ino) {
                let _ = std::fs::remove_file(self.data_path(ino));
            }
            report.inodes_lost += 1;
        }
        Ok(report)
    }
}

/// What a power cut forgot.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CutReport {
    /// Files that had unsynced writes.
    pub files_reverted: u64,
    /// Directories whose entries went back to their durable state.
    pub directories_reverted: u64,
    /// Files and directories no durable name reached any more.
    pub inodes_lost: u64,
    /// Bytes of unsynced writes that survived (torn cuts).
    pub torn_bytes_kept: u64,
}

/// Applies `ops` to the backing file at `path`, then syncs it; `len` fixes
/// the size afterwards (a file's fsync), `None` keeps what the ops left.
fn persist(path: &PathBuf, ops: &[Op], len: Option<u64>) -> Result<(), FsError> {
    let file = OpenOptions::new().write(true).open(path).map_err(io)?;
    for op in ops {
        match op {
            Op::Write { offset, data } => file.write_all_at(data, *offset).map_err(io)?,
            Op::Truncate(len) => file.set_len(*len).map_err(io)?,
        }
    }
    if let Some(len) = len {
        file.set_len(len).map_err(io)?;
    }
    file.sync_all().map_err(io)
}

/// The file pages a write of `len` bytes at `offset` touches.
fn pages_touched(offset: u64, len: usize) -> u64 {
    if len == 0 {
        return 0;
    }
    (offset + len as u64 - 1) / PAGE - offset / PAGE + 1
}

/// A prefix of `ops` that reached the disk before the power went: `pick`
/// (mod the pages the writes touch, + 1) file pages of them, in order; the
/// last write kept may be cut at a page boundary of the file.
fn torn_prefix(ops: &[Op], pick: u64) -> Vec<Op> {
    let total: u64 = ops
        .iter()
        .map(|op| match op {
            Op::Write { offset, data } => pages_touched(*offset, data.len()),
            Op::Truncate(_) => 0,
        })
        .sum();
    let mut pages = pick % (total + 1);
    let mut kept = Vec::new();
    for op in ops {
        match op {
            Op::Truncate(_) => kept.push(op.clone()),
            Op::Write { offset, data } => {
                if pages == 0 {
                    break;
                }
                let needed = pages_touched(*offset, data.len());
                if needed <= pages {
                    pages -= needed;
                    kept.push(op.clone());
                } else {
                    let boundary = (offset / PAGE + pages) * PAGE;
                    kept.push(Op::Write {
                        offset: *offset,
                        data: data[..(boundary - offset) as usize].to_vec(),
                    });
                    break;
                }
            }
        }
    }
    kept
}

/// splitmix64: enough to pick torn prefixes repeatably from a seed.
fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests;
