//! Signed receipts: the gateway's statement that it accepted a message.
//! Each receipt has a canonical text form; the receipts of one batch are the
//! leaves of a Merkle tree (RFC 6962 hashing) whose root the gateway signs
//! once, and each receipt carries its inclusion proof, so signing does not
//! cap throughput at the RSA sign rate.

use sha2::{Digest, Sha256};

use crate::{
    clock::{UnixMillis, format_rfc3339},
    messages::MessageRecord,
};

/// A SHA-256 value.
pub type Hash = [u8; 32];

/// The batch signature that covers one receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptProof {
    /// Position of the receipt's leaf in its batch.
    pub leaf_index: u64,
    /// Leaves in the batch.
    pub tree_size: u64,
    /// Sibling hashes, leaf to root (RFC 6962 audit path).
    pub path: Vec<Hash>,
    /// The signed root.
    pub root: Hash,
    /// The gateway key's SHA-256 signature over [`batch_head`].
    pub signature: Vec<u8>,
}

/// The gateway's statement that it accepted a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The accepted message.
    pub message: MessageRecord,
    /// True when this answers a repeated send of the same content.
    pub duplicate: bool,
}

/// A receipt with its canonical form and, when the gateway signs receipts,
/// the batch signature that covers it.
#[derive(Debug, Clone)]
pub struct SignedReceipt {
    /// What was accepted.
    pub receipt: Receipt,
    /// The signed text.
    pub canonical: Vec<u8>,
    /// The proof; none when receipt signing is not configured.
    pub proof: Option<ReceiptProof>,
}

/// Why a receipt does not check out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// The inclusion proof does not lead to the signed root.
    #[error("the inclusion proof does not lead to the signed Merkle root: the receipt was altered")]
    ProofMismatch,
    /// The root's signature does not verify with the gateway certificate.
    #[error("the gateway's signature over the Merkle root does not verify: {0}")]
    BadSignature(String),
    /// The receipt's fields disagree with its canonical form.
    #[error("the receipt's field {0} disagrees with its signed canonical form")]
    FieldMismatch(&'static str),
    /// The receipt file is malformed.
    #[error("malformed receipt: {0}")]
    Malformed(String),
    /// The gateway's receipt signer thread is gone: an internal fault.
    #[error("the receipt signer has stopped")]
    SignerStopped,
}

/// The parts of a receipt that its canonical form covers.
pub struct CanonicalParts<'a> {
    /// The sender's message id.
    pub message_id: &'a str,
    /// The sender.
    pub from: &'a str,
    /// When accepted, Unix milliseconds.
    pub accepted_at: UnixMillis,
    /// Every recipient, in order: (org code, the address it came from).
    pub recipients: Vec<(String, String)>,
    /// (name, SHA-256 hex, size) of each file.
    pub attachments: Vec<(String, String, u64)>,
    /// TOTAL_PASSED, NOT_PASSED or UNSIGNED.
    pub verification: &'a str,
    /// The audit chain's head after the message was accepted, hex.
    pub audit_head: &'a str,
}

/// The canonical text: one field per line, in a fixed order; UTF-8; no
/// trailing newline.
pub fn canonical_text(parts: &CanonicalParts<'_>) -> Vec<u8> {
    let mut lines = vec![
        "lienthong-receipt-v1".to_owned(),
        format!("message_id {}", parts.message_id),
        format!("from {}", parts.from),
        format!("accepted_at {}", format_rfc3339(parts.accepted_at)),
    ];
    for (code, via) in &parts.recipients {
        lines.push(format!("recipient {code} {via}"));
    }
    for (name, sha256, size) in &parts.attachments {
        lines.push(format!("attachment {sha256} {size} {name}"));
    }
    lines.push(format!("verification {}", parts.verification));
    lines.push(format!("audit_head {}", parts.audit_head));
    lines.join("\n").into_bytes()
}

/// The canonical text of a receipt: what the gateway signs.
pub fn canonical(receipt: &Receipt) -> Vec<u8> {
    let message = &receipt.message;
    let verification = if message.reports.is_empty() {
        "UNSIGNED"
    } else if message.reports.iter().all(crate::pki::Report::passed) {
        "TOTAL_PASSED"
    } else {
        "NOT_PASSED"
    };
    canonical_text(&CanonicalParts {
        message_id: message.message_id.as_str(),
        from: message.sender.as_str(),
        accepted_at: message.accepted_at,
        recipients: message
            .recipients
            .iter()
            .map(|recipient| (recipient.code.to_string(), recipient.via.clone()))
            .collect(),
        attachments: message
            .attachments
            .iter()
            .map(|a| (a.name.clone(), a.sha256.to_hex(), a.size))
            .collect(),
        verification,
        audit_head: &hex::encode(message.audit_head),
    })
}

/// RFC 6962 leaf hash.
pub fn leaf_hash(canonical: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0u8]);
    hasher.update(canonical);
    hasher.finalize().into()
}

fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([1u8]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// The largest power of two strictly below `n` (n > 1).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// RFC 6962 Merkle tree hash of `leaves` (already leaf-hashed); `None` if empty.
pub fn root(leaves: &[Hash]) -> Option<Hash> {
    match leaves.len() {
        0 => None,
        1 => Some(leaves[0]),
        n => {
            let k = split(n);
            Some(node_hash(&root(&leaves[..k])?, &root(&leaves[k..])?))
        }
    }
}

/// RFC 6962 audit path of leaf `index`.
pub fn audit_path(leaves: &[Hash], index: usize) -> Vec<Hash> {
    let n = leaves.len();
    if n <= 1 || index >= n {
        return Vec::new();
    }
    let k = split(n);
    let (mut path, sibling) = if index < k {
        (audit_path(&leaves[..k], index), root(&leaves[k..]))
    } else {
        (audit_path(&leaves[k..], index - k), root(&leaves[..k]))
    };
    path.extend(sibling);
    path
}

/// Every level of the tree, leaves first: an unpaired last node moves up
/// unchanged, which yields the RFC 6962 tree hash.
pub fn levels(leaves: &[Hash]) -> Vec<Vec<Hash>> {
    let mut levels = vec![leaves.to_vec()];
    while levels.last().is_some_and(|level| level.len() > 1) {
        let below = levels.last().map(Vec::as_slice).unwrap_or_default();
        let above = below
            .chunks(2)
            .map(|pair| match pair {
                [left, right] => node_hash(left, right),
                [single] => *single,
                // chunks(2) yields one or two hashes, never none.
                _ => [0u8; 32],
            })
            .collect();
        levels.push(above);
    }
    levels
}

/// The audit path of leaf `index`, read off precomputed [`levels`].
pub fn path_from_levels(levels: &[Vec<Hash>], index: usize) -> Vec<Hash> {
    let mut path = Vec::new();
    let mut position = index;
    for level in levels.iter().take(levels.len().saturating_sub(1)) {
        if let Some(sibling) = level.get(position ^ 1) {
            path.push(*sibling);
        }
        position >>= 1;
    }
    path
}

/// The root an audit path leads to (RFC 9162, 2.1.3.2), if the path fits.
pub fn root_from_path(leaf: Hash, index: u64, tree_size: u64, path: &[Hash]) -> Option<Hash> {
    if index >= tree_size {
        return None;
    }
    let (mut fn_, mut sn, mut r) = (index, tree_size - 1, leaf);
    for p in path {
        if sn == 0 {
            return None;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                while fn_ & 1 == 0 && fn_ != 0 {
                    fn_ >>= 1;
                    sn >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    (sn == 0).then_some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(format!("receipt {i}").as_bytes()))
            .collect()
    }

    #[test]
    fn every_leaf_of_every_tree_size_proves_to_the_root() {
        for n in 1..=33 {
            let leaves = leaves(n);
            let root = root(&leaves).expect("root");
            for index in 0..n {
                let path = audit_path(&leaves, index);
                assert_eq!(
                    root_from_path(leaves[index], index as u64, n as u64, &path),
                    Some(root),
                    "n={n} index={index}"
                );
            }
        }
    }

    #[test]
    fn levels_match_the_recursive_definition() {
        for n in 1..=33 {
            let leaves = leaves(n);
            let levels = levels(&leaves);
            assert_eq!(levels.last().map(|l| l[0]), root(&leaves), "n={n}");
            for index in 0..n {
                assert_eq!(
                    path_from_levels(&levels, index),
                    audit_path(&leaves, index),
                    "n={n} index={index}"
                );
            }
        }
    }

    #[test]
    fn a_changed_leaf_index_or_path_does_not_prove() {
        let leaves = leaves(10);
        let root = root(&leaves).expect("root");
        let path = audit_path(&leaves, 3);
        let other = leaf_hash(b"forged");
        assert_ne!(root_from_path(other, 3, 10, &path), Some(root));
        assert_ne!(root_from_path(leaves[3], 4, 10, &path), Some(root));
        // The path alone does not bind the tree size (RFC 9162); that is
        // why the gateway signs the size with the root (`batch_head`).
        assert_eq!(root_from_path(leaves[3], 3, 11, &path), Some(root));
        let mut bent = path.clone();
        bent[0][0] ^= 1;
        assert_ne!(root_from_path(leaves[3], 3, 10, &bent), Some(root));
        assert_eq!(root_from_path(leaves[3], 10, 10, &path), None);
    }
}

mod signer {
    //! The batch signer: one thread takes every receipt waiting, builds the
    //! tree, signs its root once and answers each with its proof.

    use tokio::sync::{mpsc, oneshot};

    use super::{Hash, ReceiptError, ReceiptProof, leaf_hash, levels, path_from_levels};
    use crate::pki::{self, SigningKey};

    struct Job {
        leaf: Hash,
        reply: oneshot::Sender<Result<ReceiptProof, ReceiptError>>,
    }

    /// Handle to the batch signer. Cheap to clone.
    #[derive(Clone)]
    pub struct ReceiptSigner {
        jobs: mpsc::Sender<Job>,
    }

    impl ReceiptSigner {
        /// Starts the signer thread with the gateway's key.
        pub fn start(key: SigningKey, max_batch: usize) -> std::io::Result<Self> {
            let (jobs, receiver) = mpsc::channel(max_batch.max(1) * 4);
            std::thread::Builder::new()
                .name("lienthong-receipts".to_owned())
                .spawn(move || run(key, receiver, max_batch.max(1)))?;
            Ok(Self { jobs })
        }

        /// Signs one receipt's canonical form; batched with concurrent ones.
        pub async fn sign(&self, canonical: &[u8]) -> Result<ReceiptProof, ReceiptError> {
            let (reply, answer) = oneshot::channel();
            let job = Job {
                leaf: leaf_hash(canonical),
                reply,
            };
            self.jobs
                .send(job)
                .await
                .map_err(|_| ReceiptError::SignerStopped)?;
            answer.await.map_err(|_| ReceiptError::SignerStopped)?
        }
    }

    fn run(key: SigningKey, mut receiver: mpsc::Receiver<Job>, max_batch: usize) {
        while let Some(first) = receiver.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < max_batch {
                match receiver.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            let leaves: Vec<Hash> = batch.iter().map(|job| job.leaf).collect();
            let levels = levels(&leaves);
            let root = levels.last().map(|level| level[0]).unwrap_or_default();
            let tree_size = batch.len() as u64;
            let signed = pki::sign_plain(&key, &super::batch_head(tree_size, &root))
                .map_err(|e| ReceiptError::BadSignature(e.to_string()));
            for (index, job) in batch.into_iter().enumerate() {
                let answer = signed.clone().map(|signature| ReceiptProof {
                    leaf_index: index as u64,
                    tree_size,
                    path: path_from_levels(&levels, index),
                    root,
                    signature,
                });
                let _ = job.reply.send(answer);
            }
        }
    }
}

pub use signer::ReceiptSigner;

/// What the gateway signs for a batch: a label, the number of receipts and
/// the Merkle root (like a Certificate Transparency signed tree head), so
/// that neither the size nor the root can be changed.
pub fn batch_head(tree_size: u64, root: &Hash) -> Vec<u8> {
    let mut head = b"lienthong-receipt-batch-v1\n".to_vec();
    head.extend_from_slice(&tree_size.to_be_bytes());
    head.extend_from_slice(root);
    head
}

/// Checks a receipt offline: its proof leads to the signed root, and the
/// gateway's plain SHA-256 signature over the batch head verifies with its
/// certificate.
pub fn verify(
    canonical: &[u8],
    proof: &ReceiptProof,
    gateway_certificate_pem: &[u8],
) -> Result<(), ReceiptError> {
    let root = root_from_path(
        leaf_hash(canonical),
        proof.leaf_index,
        proof.tree_size,
        &proof.path,
    )
    .ok_or(ReceiptError::ProofMismatch)?;
    if root != proof.root {
        return Err(ReceiptError::ProofMismatch);
    }
    let head = batch_head(proof.tree_size, &proof.root);
    crate::pki::verify_plain(&head, &proof.signature, gateway_certificate_pem)
        .map_err(|e| ReceiptError::BadSignature(e.to_string()))
}
