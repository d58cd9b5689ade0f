//! The FUSE front of the [`Model`]: a mounted filesystem whose power the
//! test cuts. [`Disk::cut`] unmounts it (which also drops the kernel's page
//! cache for it), makes the model forget what was not durable, and mounts
//! the survivors again at the same place.

use std::{
    ffi::OsStr,
    io,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, SystemTime},
};

use fuser::{
    AccessFlags, BackgroundSession, Config, Errno, FileAttr, FileHandle, FileType, Filesystem,
    FopenFlags, Generation, INodeNo, LockOwner, MountOption, OpenFlags, RenameFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs,
    ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use crate::model::{Cut, CutReport, FsError, Ino, Kind, Model};

/// Attributes are never cached by the kernel: sizes change under it at a cut.
const TTL: Duration = Duration::ZERO;

fn errno(error: FsError) -> Errno {
    match error {
        FsError::NotFound => Errno::ENOENT,
        FsError::Exists => Errno::EEXIST,
        FsError::NotEmpty => Errno::ENOTEMPTY,
        FsError::NotDir => Errno::ENOTDIR,
        FsError::IsDir => Errno::EISDIR,
        FsError::NoSpace => Errno::ENOSPC,
        FsError::Io(_) => Errno::EIO,
    }
}

/// The filesystem the kernel talks to: every call goes to the shared model.
struct Front {
    model: Arc<Mutex<Model>>,
}

impl Front {
    fn model(&self) -> MutexGuard<'_, Model> {
        // A panic while holding the lock leaves the model usable: every
        // operation either completed or changed nothing it checks.
        self.model.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn attr(model: &Model, ino: Ino) -> Result<FileAttr, FsError> {
        let kind = model.kind(ino).ok_or(FsError::NotFound)?;
        let size = model.len(ino)?;
        let (kind, perm, nlink) = match kind {
            Kind::File => (FileType::RegularFile, 0o644, 1),
            Kind::Dir => (FileType::Directory, 0o755, 2),
        };
        let now = SystemTime::now();
        Ok(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: now,
            mtime: now,
            ctime: now,
            crtime: now,
            kind,
            perm,
            nlink,
            uid: 0,
            gid: 0,
            rdev: 0,
            flags: 0,
            blksize: crate::model::PAGE as u32,
        })
    }
}

/// Answers a call that returns nothing but success or an errno.
fn empty(result: Result<(), FsError>, reply: ReplyEmpty) {
    match result {
        Ok(()) => reply.ok(),
        Err(error) => reply.error(errno(error)),
    }
}

/// Answers a call that names an inode (lookup, mkdir) with its attributes.
fn entry(model: &Model, ino: Result<Ino, FsError>, reply: ReplyEntry) {
    match ino.and_then(|ino| Front::attr(model, ino)) {
        Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
        Err(error) => reply.error(errno(error)),
    }
}

impl Filesystem for Front {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let model = self.model();
        entry(&model, model.lookup(parent.0, name), reply);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match Self::attr(&self.model(), ino.0) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(error) => reply.error(errno(error)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut model = self.model();
        let done = match size {
            Some(len) => model.truncate(ino.0, len),
            None => Ok(()),
        };
        match done.and_then(|()| Self::attr(&model, ino.0)) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(error) => reply.error(errno(error)),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let mut model = self.model();
        let made = model.mkdir(parent.0, name);
        entry(&model, made, reply);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(self.model().unlink(parent.0, name), reply);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(self.model().rmdir(parent.0, name), reply);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        new_parent: INodeNo,
        new_name: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if !flags.is_empty() {
            reply.error(Errno::EINVAL);
            return;
        }
        empty(
            self.model().rename(parent.0, name, new_parent.0, new_name),
            reply,
        );
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.model().kind(ino.0) {
            Some(_) => reply.opened(FileHandle(0), FopenFlags::empty()),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let mut model = self.model();
        match model
            .create(parent.0, name)
            .and_then(|ino| Self::attr(&model, ino))
        {
            Ok(attr) => reply.created(
                &TTL,
                &attr,
                Generation(0),
                FileHandle(0),
                FopenFlags::empty(),
            ),
            Err(error) => reply.error(errno(error)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.model().read(ino.0, offset, size as usize) {
            Ok(data) => reply.data(&data),
            Err(error) => reply.error(errno(error)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.model().write(ino.0, offset, data) {
            Ok(()) => reply.written(data.len() as u32),
            Err(error) => reply.error(errno(error)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // close(2) makes nothing durable.
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        empty(self.model().fsync(ino.0), reply);
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.model().kind(ino.0) {
            Some(Kind::Dir) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Some(Kind::File) => reply.error(Errno::ENOTDIR),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let model = self.model();
        let entries = match model.entries(ino.0) {
            Ok(entries) => entries,
            Err(error) => {
                reply.error(errno(error));
                return;
            }
        };
        let listed = [
            (ino.0, FileType::Directory, OsStr::new(".").to_owned()),
            (ino.0, FileType::Directory, OsStr::new("..").to_owned()),
        ]
        .into_iter()
        .chain(entries.into_iter().map(|(name, child)| {
            let kind = match model.kind(child) {
                Some(Kind::Dir) => FileType::Directory,
                _ => FileType::RegularFile,
            };
            (child, kind, name)
        }));
        for (index, (child, kind, name)) in listed.enumerate().skip(offset as usize) {
            if reply.add(INodeNo(child), index as u64 + 1, kind, &name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        empty(self.model().fsync(ino.0), reply);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let (total, free) = self.model().space();
        let block = crate::model::PAGE;
        reply.statfs(
            total / block,
            free / block,
            free / block,
            1 << 20,
            1 << 20,
            block as u32,
            255,
            block as u32,
        );
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        match self.model().kind(ino.0) {
            Some(_) => reply.ok(),
            None => reply.error(Errno::ENOENT),
        }
    }
}

/// A mounted power-cut filesystem. Unmounted when dropped, even when the
/// test that mounted it fails.
pub struct Disk {
    model: Arc<Mutex<Model>>,
    mountpoint: PathBuf,
    session: Option<BackgroundSession>,
}

impl Disk {
    /// Mounts an empty filesystem at `mountpoint`, its durable file data in
    /// `backing` (both existing, empty directories).
    pub fn mount(mountpoint: &Path, backing: &Path) -> io::Result<Self> {
        let model = Arc::new(Mutex::new(Model::new(backing.to_path_buf())));
        let mut disk = Self {
            model,
            mountpoint: mountpoint.to_path_buf(),
            session: None,
        };
        disk.attach()?;
        Ok(disk)
    }

    fn attach(&mut self) -> io::Result<()> {
        let mut config = Config::default();
        config
            .mount_options
            .extend([MountOption::FSName("lienthong-powercut".to_owned())]);
        let front = Front {
            model: self.model.clone(),
        };
        self.session = Some(fuser::spawn_mount(front, &self.mountpoint, &config)?);
        Ok(())
    }

    fn detach(&mut self) -> io::Result<()> {
        match self.session.take() {
            Some(session) => session.umount_and_join(),
            None => Ok(()),
        }
    }

    /// For tests: mounts at `dir/mnt` with its data in `dir/backing`. Where
    /// FUSE cannot be used (no `/dev/fuse`, no `fusermount3`, not root) it
    /// prints SKIPPED and answers `None`, except under `CI`, where it panics:
    /// there a missing part fails the test.
    pub fn mount_for_test(dir: &Path) -> Option<Self> {
        let (mountpoint, backing) = (dir.join("mnt"), dir.join("backing"));
        let made = std::fs::create_dir_all(&mountpoint)
            .and_then(|()| std::fs::create_dir_all(&backing))
            .and_then(|()| Self::mount(&mountpoint, &backing));
        match made {
            Ok(disk) => Some(disk),
            Err(error) if std::env::var_os("CI").is_none() => {
                eprintln!("SKIPPED: cannot mount FUSE here ({error}); install fuse3, run as root");
                None
            }
            Err(error) => panic!("mounting the power-cut filesystem: {error}"),
        }
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    /// The model, to set its modes (a lying fsync, a quota).
    pub fn model(&self) -> MutexGuard<'_, Model> {
        self.model.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Cuts the power: unmounts (nothing may hold a file open: kill the
    /// programs using it first), forgets what was not durable, and mounts
    /// what survived at the same place.
    pub fn cut(&mut self, cut: Cut) -> io::Result<CutReport> {
        self.detach()?;
        let report = self
            .model()
            .cut(cut)
            .map_err(|error| io::Error::other(error.to_string()))?;
        self.attach()?;
        Ok(report)
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        if let Err(error) = self.detach() {
            eprintln!(
                "unmounting the power-cut filesystem at {} failed: {error}",
                self.mountpoint.display()
            );
        }
    }
}
