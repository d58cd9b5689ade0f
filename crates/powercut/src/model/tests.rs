//! The volatile layer on its own: what survives a cut and what does not.

use super::*;

fn model() -> (Model, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    (Model::new(dir.path().to_path_buf()), dir)
}

fn name(text: &str) -> &OsStr {
    OsStr::new(text)
}

fn contents(model: &Model, ino: Ino) -> Vec<u8> {
    model
        .read(ino, 0, model.len(ino).expect("len") as usize)
        .expect("read")
}

#[test]
fn synced_data_survives_and_unsynced_data_does_not() {
    let (mut fs, _dir) = model();
    let file = fs.create(ROOT, name("log")).expect("create");
    fs.fsync(ROOT).expect("fsync dir");
    fs.write(file, 0, b"durable").expect("write");
    fs.fsync(file).expect("fsync");
    fs.write(file, 7, b" and lost").expect("write");
    assert_eq!(contents(&fs, file), b"durable and lost");
    let report = fs.cut(Cut::Clean).expect("cut");
    assert_eq!(report.files_reverted, 1);
    assert_eq!(fs.lookup(ROOT, name("log")), Ok(file));
    assert_eq!(contents(&fs, file), b"durable");
}

#[test]
fn a_new_file_is_lost_without_an_fsync_of_its_directory_even_if_its_data_was_synced() {
    let (mut fs, _dir) = model();
    let file = fs.create(ROOT, name("blob")).expect("create");
    fs.write(file, 0, b"content").expect("write");
    fs.fsync(file).expect("fsync file only");
    let report = fs.cut(Cut::Clean).expect("cut");
    assert_eq!(fs.lookup(ROOT, name("blob")), Err(FsError::NotFound));
    assert_eq!(report.inodes_lost, 1);
    assert_eq!(report.directories_reverted, 1);

    let file = fs.create(ROOT, name("blob")).expect("create");
    fs.write(file, 0, b"content").expect("write");
    fs.fsync(file).expect("fsync file");
    fs.fsync(ROOT).expect("fsync dir");
    fs.cut(Cut::Clean).expect("cut");
    let file = fs.lookup(ROOT, name("blob")).expect("kept");
    assert_eq!(contents(&fs, file), b"content");
}

#[test]
fn a_new_directory_needs_its_parent_synced_and_its_entries_need_it_synced() {
    let (mut fs, _dir) = model();
    let sub = fs.mkdir(ROOT, name("ab")).expect("mkdir");
    let file = fs.create(sub, name("abcd")).expect("create");
    fs.write(file, 0, b"x").expect("write");
    fs.fsync(file).expect("fsync");
    fs.fsync(sub).expect("fsync sub");
    // The parent was never synced: the directory and all below it go.
    fs.cut(Cut::Clean).expect("cut");
    assert_eq!(fs.lookup(ROOT, name("ab")), Err(FsError::NotFound));

    let sub = fs.mkdir(ROOT, name("ab")).expect("mkdir");
    fs.fsync(ROOT).expect("fsync root");
    let file = fs.create(sub, name("abcd")).expect("create");
    fs.write(file, 0, b"x").expect("write");
    fs.fsync(file).expect("fsync");
    fs.cut(Cut::Clean).expect("cut");
    let sub = fs.lookup(ROOT, name("ab")).expect("directory kept");
    assert_eq!(fs.lookup(sub, name("abcd")), Err(FsError::NotFound));
}

/// The blob store's protocol (write a temporary file, fsync it, rename it
/// into place, fsync the directory) survives; without the last step, the
/// class of bug the defects issue found, the file is lost.
#[test]
fn write_fsync_rename_needs_the_directory_fsync_and_the_model_catches_its_absence() {
    for sync_directory in [true, false] {
        let (mut fs, _dir) = model();
        let tmp = fs.mkdir(ROOT, name("tmp")).expect("mkdir");
        let shard = fs.mkdir(ROOT, name("ab")).expect("mkdir");
        fs.fsync(ROOT).expect("fsync root");
        let staged = fs.create(tmp, name("upload")).expect("create");
        fs.write(staged, 0, b"attachment").expect("write");
        fs.fsync(staged).expect("fsync file");
        fs.rename(tmp, name("upload"), shard, name("abcd"))
            .expect("rename");
        if sync_directory {
            fs.fsync(shard).expect("fsync directory");
        }
        fs.cut(Cut::Clean).expect("cut");
        let found = fs.lookup(shard, name("abcd"));
        if sync_directory {
            assert_eq!(contents(&fs, found.expect("kept")), b"attachment");
        } else {
            assert_eq!(found, Err(FsError::NotFound), "kept without the fsync");
        }
    }
}

#[test]
fn a_rename_and_an_unlink_revert_until_their_directories_are_synced() {
    let (mut fs, _dir) = model();
    let file = fs.create(ROOT, name("old")).expect("create");
    fs.write(file, 0, b"kept").expect("write");
    fs.fsync(file).expect("fsync");
    fs.fsync(ROOT).expect("fsync dir");
    fs.rename(ROOT, name("old"), ROOT, name("new"))
        .expect("rename");
    fs.cut(Cut::Clean).expect("cut");
    assert_eq!(fs.lookup(ROOT, name("old")), Ok(file));
    assert_eq!(fs.lookup(ROOT, name("new")), Err(FsError::NotFound));

    fs.unlink(ROOT, name("old")).expect("unlink");
    assert_eq!(fs.lookup(ROOT, name("old")), Err(FsError::NotFound));
    fs.cut(Cut::Clean).expect("cut");
    assert_eq!(
        contents(&fs, fs.lookup(ROOT, name("old")).expect("back")),
        b"kept"
    );

    fs.unlink(ROOT, name("old")).expect("unlink");
    fs.fsync(ROOT).expect("fsync dir");
    let report = fs.cut(Cut::Clean).expect("cut");
    assert_eq!(fs.lookup(ROOT, name("old")), Err(FsError::NotFound));
    assert_eq!(report.inodes_lost, 1);
}

#[test]
fn reads_see_writes_truncations_and_holes_in_order() {
    let (mut fs, _dir) = model();
    let file = fs.create(ROOT, name("f")).expect("create");
    fs.fsync(ROOT).expect("fsync dir");
    fs.write(file, 0, b"abcdef").expect("write");
    fs.fsync(file).expect("fsync");
    fs.truncate(file, 2).expect("truncate");
    fs.write(file, 4, b"XY").expect("write");
    assert_eq!(contents(&fs, file), b"ab\0\0XY");
    assert_eq!(fs.read(file, 3, 2).expect("read"), b"\0X");
    fs.fsync(file).expect("fsync");
    fs.cut(Cut::Clean).expect("cut");
    assert_eq!(contents(&fs, file), b"ab\0\0XY");
}

#[test]
fn a_torn_cut_keeps_a_page_aligned_prefix_of_the_unsynced_writes() {
    let mut kept_sizes = BTreeSet::new();
    for seed in 1..40 {
        let (mut fs, _dir) = model();
        let file = fs.create(ROOT, name("log")).expect("create");
        fs.fsync(ROOT).expect("fsync dir");
        fs.write(file, 0, &[1u8; 100]).expect("write");
        fs.fsync(file).expect("fsync");
        // Three unsynced writes, 3 pages in all.
        fs.write(file, 100, &[2u8; 5000]).expect("write");
        fs.write(file, 5100, &[3u8; 10]).expect("write");
        fs.cut(Cut::Torn { seed }).expect("cut");
        let data = contents(&fs, file);
        assert!(
            [100, PAGE as usize, 5100, 5110].contains(&data.len()),
            "seed {seed}: {} bytes",
            data.len()
        );
        assert!(data[..100].iter().all(|b| *b == 1));
        assert!(data[100..data.len().min(5100)].iter().all(|b| *b == 2));
        kept_sizes.insert(data.len());
    }
    assert!(kept_sizes.len() >= 3, "prefixes seen: {kept_sizes:?}");
}

#[test]
fn when_fsync_lies_nothing_survives() {
    let (mut fs, _dir) = model();
    fs.set_fsync_lies(true);
    let file = fs.create(ROOT, name("log")).expect("create");
    fs.write(file, 0, b"acknowledged").expect("write");
    fs.fsync(file).expect("fsync answers OK");
    fs.fsync(ROOT).expect("fsync answers OK");
    fs.cut(Cut::Clean).expect("cut");
    assert_eq!(fs.lookup(ROOT, name("log")), Err(FsError::NotFound));
}

#[test]
fn a_quota_refuses_writes_beyond_it_and_freed_space_is_usable_again() {
    let (mut fs, _dir) = model();
    fs.set_quota(Some(10_000));
    let a = fs.create(ROOT, name("a")).expect("create");
    fs.write(a, 0, &[0u8; 8_000]).expect("within the quota");
    let b = fs.create(ROOT, name("b")).expect("create");
    assert_eq!(fs.write(b, 0, &[0u8; 4_000]), Err(FsError::NoSpace));
    fs.truncate(a, 0).expect("truncate");
    fs.fsync(a).expect("fsync");
    fs.write(b, 0, &[0u8; 4_000]).expect("room again");
}

#[test]
fn names_are_checked_like_a_filesystem_does() {
    let (mut fs, _dir) = model();
    let dir = fs.mkdir(ROOT, name("d")).expect("mkdir");
    fs.create(dir, name("f")).expect("create");
    assert_eq!(fs.create(dir, name("f")), Err(FsError::Exists));
    assert_eq!(fs.rmdir(ROOT, name("d")), Err(FsError::NotEmpty));
    assert_eq!(fs.unlink(ROOT, name("d")), Err(FsError::IsDir));
    let file = fs.lookup(dir, name("f")).expect("f");
    assert_eq!(fs.create(file, name("x")), Err(FsError::NotDir));
    assert_eq!(fs.lookup(ROOT, name("missing")), Err(FsError::NotFound));
}
