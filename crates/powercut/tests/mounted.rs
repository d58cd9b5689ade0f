//! The power-cut filesystem mounted with FUSE and used through the kernel,
//! as the gateway uses it: std::fs calls, fsync and fdatasync, directory
//! fsyncs, renames, and the store's own blob writes.

use std::{
    fs::{self, File, OpenOptions},
    io::Write,
    path::Path,
};

use lienthong_powercut::{Cut, Disk};

fn sync_dir(path: &Path) {
    File::open(path)
        .expect("open dir")
        .sync_all()
        .expect("fsync dir");
}

#[test]
fn through_the_kernel_synced_data_survives_a_cut_and_unsynced_data_does_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(mut disk) = Disk::mount_for_test(dir.path()) else {
        return;
    };
    let root = disk.path().to_path_buf();
    let log = root.join("log");
    let mut file = File::create(&log).expect("create");
    sync_dir(&root);
    file.write_all(b"durable").expect("write");
    file.sync_data().expect("fdatasync");
    file.write_all(b" and lost").expect("write");
    drop(file);
    assert_eq!(fs::read(&log).expect("read"), b"durable and lost");
    // A file created and synced, but its name never synced.
    let mut orphan = File::create(root.join("orphan")).expect("create");
    orphan.write_all(b"x").expect("write");
    orphan.sync_all().expect("fsync");
    drop(orphan);

    let report = disk.cut(Cut::Clean).expect("cut");
    assert_eq!(fs::read(&log).expect("read"), b"durable");
    assert!(!root.join("orphan").exists(), "an unsynced name survived");
    assert!(
        report.files_reverted >= 1 && report.inodes_lost >= 1,
        "{report:?}"
    );
}

#[test]
fn the_blob_store_survives_cuts_and_its_protocol_without_the_directory_fsync_does_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(mut disk) = Disk::mount_for_test(dir.path()) else {
        return;
    };
    let root = disk.path().to_path_buf();

    // The store's own code: content it reported stored survives.
    let blobs = lienthong_store::BlobStore::open(&root.join("blobs")).expect("open blobs");
    let hash = blobs.put(b"an attachment").expect("put");
    drop(blobs);
    disk.cut(Cut::Clean).expect("cut");
    let blobs = lienthong_store::BlobStore::open(&root.join("blobs")).expect("reopen");
    assert_eq!(blobs.get(&hash).expect("kept"), b"an attachment");
    drop(blobs);

    // The same protocol with the directory fsync left out (the defect the
    // first outside attack found): the filesystem loses the file.
    let shard = root.join("shard");
    fs::create_dir(&shard).expect("mkdir");
    sync_dir(&root);
    let tmp = root.join("upload.tmp");
    let mut file = OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(&tmp)
        .expect("create");
    file.write_all(b"content").expect("write");
    file.sync_all().expect("fsync");
    drop(file);
    fs::rename(&tmp, shard.join("blob")).expect("rename");
    disk.cut(Cut::Clean).expect("cut");
    assert!(
        !shard.join("blob").exists(),
        "a rename without its directory fsync survived the cut"
    );
}

#[test]
fn a_lying_fsync_loses_what_it_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(mut disk) = Disk::mount_for_test(dir.path()) else {
        return;
    };
    let root = disk.path().to_path_buf();
    disk.model().set_fsync_lies(true);
    let mut file = File::create(root.join("acked")).expect("create");
    file.write_all(b"acknowledged").expect("write");
    file.sync_all().expect("fsync answers OK");
    drop(file);
    sync_dir(&root);
    disk.cut(Cut::Clean).expect("cut");
    assert!(!root.join("acked").exists());
}
