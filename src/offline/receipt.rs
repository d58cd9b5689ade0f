//! `lienthong receipt verify`: check a saved receipt offline.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Subcommand;
use lienthong::{
    proto,
    receipt::{self, CanonicalParts, ReceiptProof},
};
use prost::Message;

use lienthong_cli::read;

/// `lienthong receipt ...`
#[derive(Subcommand, Debug)]
pub enum ReceiptCommand {
    /// Check a receipt saved by `send --receipt-out`: its fields, its
    /// inclusion proof and the gateway's signature over the batch root.
    Verify {
        /// The receipt file.
        receipt: PathBuf,
        /// The gateway's receipt-signing certificate (PEM).
        #[arg(long)]
        gateway_cert: PathBuf,
    },
}

fn hash(bytes: &[u8], what: &str) -> anyhow::Result<[u8; 32]> {
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("{what} is {} bytes, not 32", bytes.len()))
}

/// Runs a receipt command.
pub fn receipt(command: ReceiptCommand) -> anyhow::Result<()> {
    let ReceiptCommand::Verify {
        receipt: path,
        gateway_cert,
    } = command;
    let bytes = read(&path, "receipt")?;
    let receipt = proto::Receipt::decode(bytes.as_slice()).context("the file is not a receipt")?;
    if receipt.encode_to_vec() != bytes {
        bail!("the receipt file is not in the form the gateway wrote: it was altered");
    }
    let timestamp = receipt
        .accepted_at
        .context("the receipt has no accepted_at")?;
    if timestamp.nanos % 1_000_000 != 0 {
        bail!(
            "accepted_at has a precision the gateway never writes (below a millisecond): the receipt was altered"
        );
    }
    let accepted_at = timestamp.seconds * 1000 + i64::from(timestamp.nanos / 1_000_000);
    let verification = match proto::Indication::try_from(receipt.verification) {
        Ok(proto::Indication::TotalPassed) => "TOTAL_PASSED",
        Ok(proto::Indication::Unspecified) => "UNSIGNED",
        _ => "NOT_PASSED",
    };
    let expected = receipt::canonical_text(&CanonicalParts {
        message_id: &receipt.message_id,
        from: &receipt.from,
        accepted_at,
        recipients: receipt
            .recipients
            .iter()
            .map(|r| (r.code.clone(), r.via.clone()))
            .collect(),
        attachments: receipt
            .attachments
            .iter()
            .map(|a| (a.name.clone(), a.sha256.clone(), a.size))
            .collect(),
        verification,
        audit_head: &receipt.audit_head,
    });
    if expected != receipt.canonical {
        bail!("the receipt's fields disagree with the text the gateway signed: it was altered");
    }
    let Some(signature) = &receipt.signature else {
        bail!("the receipt is not signed (the gateway has no [receipts] identity)");
    };
    let proof = ReceiptProof {
        leaf_index: signature.leaf_index,
        tree_size: signature.tree_size,
        path: signature
            .inclusion_proof
            .iter()
            .map(|h| hash(h, "a proof hash"))
            .collect::<anyhow::Result<_>>()?,
        root: hash(&signature.merkle_root, "the Merkle root")?,
        signature: signature.signature.clone(),
    };
    receipt::verify(
        &receipt.canonical,
        &proof,
        &read(&gateway_cert, "gateway certificate")?,
    )?;
    println!(
        "receipt valid: message {} from {} accepted at {} for {}; signed by the gateway (receipt {} of a batch of {})",
        receipt.message_id,
        receipt.from,
        lienthong::clock::format_rfc3339(accepted_at),
        receipt
            .recipients
            .iter()
            .map(|r| r.code.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        proof.leaf_index + 1,
        proof.tree_size
    );
    Ok(())
}
