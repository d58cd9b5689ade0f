//! Where `lienthong receive --out` puts a document: `OUT/SENDER/MESSAGE_ID/`
//! holding the attachments under their (made safe) names, `signatures/` with
//! one `.p7s` per signature, and `manifest.json` mapping every original name
//! to its file and SHA-256.
//!
//! Nothing is ever overwritten: every file is created new, names that clash
//! once made safe get a `~2`, `~3` suffix, and a redelivered message goes to
//! `MESSAGE_ID~2`. Each file is fsynced and its SHA-256 checked by reading
//! it back from disk before the document counts as saved (and may be acked).

use std::{
    collections::HashSet,
    fs::{File, OpenOptions},
    io::{Read, Write},
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

/// Names inside a document directory that attachments cannot take.
const RESERVED: [&str; 2] = ["signatures", "manifest.json"];
/// Longest file name written, in bytes (Linux's NAME_MAX is 255; room is
/// left for a `~N` suffix).
const MAX_NAME_BYTES: usize = 240;

/// A name from the network, made safe as one path component: no
/// separators or control characters, not `.` or `..`, at most
/// [`MAX_NAME_BYTES`] bytes (cut at a character boundary, extension kept).
pub fn safe_component(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c == '\0' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    let cleaned = match cleaned.as_str() {
        "" | "." | ".." => "_".to_owned(),
        _ => cleaned,
    };
    if cleaned.len() <= MAX_NAME_BYTES {
        return cleaned;
    }
    let (stem, extension) = split_extension(&cleaned);
    let extension = if extension.len() <= 16 { extension } else { "" };
    let mut cut = MAX_NAME_BYTES - extension.len();
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{extension}", &stem[..cut])
}

/// `("report", ".pdf")` of `report.pdf`; a leading dot is not an extension.
fn split_extension(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(index) if index > 0 => name.split_at(index),
        _ => (name, ""),
    }
}

#[derive(serde::Serialize)]
struct ManifestFile {
    /// The name as the sender gave it.
    name: String,
    /// The file it was saved as, relative to the document directory.
    file: String,
    sha256: String,
    size: u64,
}

#[derive(serde::Serialize)]
struct ManifestSignature {
    attachment: String,
    file: String,
}

#[derive(serde::Serialize)]
struct Manifest {
    message_id: String,
    from: String,
    attachments: Vec<ManifestFile>,
    signatures: Vec<ManifestSignature>,
}

/// One document being saved.
pub struct SavedDocument {
    dir: PathBuf,
    used: HashSet<String>,
    manifest: Manifest,
}

impl SavedDocument {
    /// Creates a new directory for the document under `out`.
    pub fn create(out: &Path, from: &str, message_id: &str) -> anyhow::Result<Self> {
        let sender_dir = out.join(safe_component(from));
        std::fs::create_dir_all(&sender_dir)
            .with_context(|| format!("creating {}", sender_dir.display()))?;
        let base = safe_component(message_id);
        let mut dir = sender_dir.join(&base);
        let mut attempt = 1;
        loop {
            match std::fs::create_dir(&dir) {
                Ok(()) => break,
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                    attempt += 1;
                    if attempt > 1000 {
                        bail!(
                            "{} has 1000 copies already",
                            sender_dir.join(&base).display()
                        );
                    }
                    dir = sender_dir.join(format!("{base}~{attempt}"));
                }
                Err(error) => {
                    return Err(error).with_context(|| format!("creating {}", dir.display()));
                }
            }
        }
        if attempt > 1 {
            eprintln!(
                "  {} exists (an earlier delivery of this message); saving to {}",
                sender_dir.join(&base).display(),
                dir.display()
            );
        }
        std::fs::create_dir(dir.join("signatures"))
            .with_context(|| format!("creating {}/signatures", dir.display()))?;
        Ok(Self {
            dir,
            used: RESERVED.iter().map(|s| (*s).to_owned()).collect(),
            manifest: Manifest {
                message_id: message_id.to_owned(),
                from: from.to_owned(),
                attachments: Vec::new(),
                signatures: Vec::new(),
            },
        })
    }

    /// The document's directory.
    #[cfg(test)]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A name not taken yet in the document directory.
    fn unique(&mut self, name: &str) -> String {
        let safe = safe_component(name);
        let mut candidate = safe.clone();
        let mut n = 1;
        while self.used.contains(&candidate) {
            n += 1;
            let (stem, extension) = split_extension(&safe);
            candidate = format!("{stem}~{n}{extension}");
        }
        self.used.insert(candidate.clone());
        candidate
    }

    /// Creates the file for attachment `name`, never over an existing one.
    pub fn attachment_file(&mut self, name: &str) -> anyhow::Result<(PathBuf, File)> {
        let file_name = self.unique(name);
        let path = self.dir.join(&file_name);
        let file = create_new(&path)?;
        Ok((path, file))
    }

    /// Records a fully written attachment after checking what is on disk.
    pub fn attachment_done(
        &mut self,
        name: &str,
        path: &Path,
        file: File,
        expected_sha256: &str,
    ) -> anyhow::Result<()> {
        file.sync_all()
            .with_context(|| format!("fsync of {}", path.display()))?;
        drop(file);
        let (sha256, size) = hash_file(path)?;
        if !expected_sha256.is_empty() && sha256 != expected_sha256 {
            bail!(
                "{} does not match its SHA-256 on disk (got {sha256}, announced {expected_sha256}); not acknowledged",
                path.display()
            );
        }
        self.manifest.attachments.push(ManifestFile {
            name: name.to_owned(),
            file: self.relative(path),
            sha256,
            size,
        });
        Ok(())
    }

    /// Writes a whole attachment and checks it on disk.
    pub fn save_attachment(&mut self, name: &str, content: &[u8]) -> anyhow::Result<()> {
        let (path, mut file) = self.attachment_file(name)?;
        file.write_all(content)
            .with_context(|| format!("writing {}", path.display()))?;
        let expected = hex::encode(Sha256::digest(content));
        self.attachment_done(name, &path, file, &expected)
    }

    /// Writes signature number `index`, over `attachment`, into `signatures/`.
    pub fn save_signature(
        &mut self,
        index: usize,
        attachment: &str,
        cms_der: &[u8],
    ) -> anyhow::Result<()> {
        let name = format!("{index}.p7s");
        let path = self.dir.join("signatures").join(&name);
        let mut file = create_new(&path)?;
        file.write_all(cms_der)
            .and_then(|()| file.sync_all())
            .with_context(|| format!("writing {}", path.display()))?;
        drop(file);
        let (sha256, _) = hash_file(&path)?;
        if sha256 != hex::encode(Sha256::digest(cms_der)) {
            bail!("{} does not read back as written", path.display());
        }
        self.manifest.signatures.push(ManifestSignature {
            attachment: attachment.to_owned(),
            file: format!("signatures/{name}"),
        });
        Ok(())
    }

    /// Writes `manifest.json` and makes every directory entry durable; only
    /// then may the document be acknowledged.
    pub fn finish(self) -> anyhow::Result<PathBuf> {
        let path = self.dir.join("manifest.json");
        let mut file = create_new(&path)?;
        let text = serde_json::to_vec_pretty(&self.manifest).context("encoding the manifest")?;
        file.write_all(&text)
            .and_then(|()| file.sync_all())
            .with_context(|| format!("writing {}", path.display()))?;
        for dir in [
            self.dir.join("signatures"),
            self.dir.clone(),
            self.dir.parent().map(Path::to_path_buf).unwrap_or_default(),
        ] {
            File::open(&dir)
                .and_then(|d| d.sync_all())
                .with_context(|| format!("fsync of {}", dir.display()))?;
        }
        Ok(self.dir)
    }

    fn relative(&self, path: &Path) -> String {
        path.strip_prefix(&self.dir)
            .unwrap_or(path)
            .display()
            .to_string()
    }
}

fn create_new(path: &Path) -> anyhow::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("creating {} (never overwriting)", path.display()))
}

/// SHA-256 (hex) and size of a file as it is on disk.
fn hash_file(path: &Path) -> anyhow::Result<(String, u64)> {
    let mut file = File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let read = file
            .read(&mut buffer)
            .with_context(|| format!("reading {}", path.display()))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        size += read as u64;
    }
    Ok((hex::encode(hasher.finalize()), size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clashing_names_never_overwrite_and_signatures_stay_apart() {
        let out = tempfile::tempdir().unwrap();
        let mut doc = SavedDocument::create(out.path(), "000.00.12.H56", "m-1").unwrap();
        doc.save_attachment("a\nb.txt", b"first").unwrap();
        doc.save_attachment("a_b.txt", b"second").unwrap();
        doc.save_attachment("x.pdf.0.p7s", b"an attachment")
            .unwrap();
        doc.save_attachment("manifest.json", b"not the manifest")
            .unwrap();
        doc.save_signature(0, "x.pdf.0.p7s", b"cms").unwrap();
        let long = format!("{}.pdf", "ư".repeat(199));
        doc.save_attachment(&long, b"long").unwrap();
        let dir = doc.finish().unwrap();
        let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
        assert_eq!(read("a_b.txt"), b"first");
        assert_eq!(read("a_b~2.txt"), b"second");
        assert_eq!(read("x.pdf.0.p7s"), b"an attachment");
        assert_eq!(read("manifest~2.json"), b"not the manifest");
        assert_eq!(read("signatures/0.p7s"), b"cms");
        let manifest: serde_json::Value = serde_json::from_slice(&read("manifest.json")).unwrap();
        assert_eq!(manifest["attachments"][1]["name"], "a_b.txt");
        assert_eq!(manifest["attachments"][1]["file"], "a_b~2.txt");
        let long_file = manifest["attachments"][4]["file"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            long_file.len() <= 255 && long_file.ends_with(".pdf"),
            "{long_file}"
        );
        assert_eq!(read(&long_file), b"long");
        // A redelivery goes beside, never over, the first copy.
        let again = SavedDocument::create(out.path(), "000.00.12.H56", "m-1").unwrap();
        assert!(again.dir().ends_with("m-1~2"), "{}", again.dir().display());
    }
}
