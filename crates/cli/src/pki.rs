//! `lienthong signer ...` and the offline `lienthong verify`.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use lienthong_domain::clock::{SystemClock, format_rfc3339};
use lienthong_pki::{self as pki, CryptoRules, Indication, Report, Role, TrustStore, Verifier};
use lienthong_proto::{self as proto, admin_client::AdminClient};

use super::{Connection, read, status_error};

/// `lienthong signer ...`
#[derive(Subcommand, Debug)]
pub enum SignerCommand {
    /// Bind a signer certificate to an agency and a role.
    Add {
        /// The agency's org code.
        #[arg(long)]
        agency: String,
        /// organization, head, account-owner, chief-accountant or officer.
        #[arg(long)]
        role: String,
        /// The signer's certificate, PEM.
        #[arg(long = "cert")]
        certificate: PathBuf,
    },
    /// List signers.
    List {
        /// Only this agency's.
        #[arg(long, default_value = "")]
        agency: String,
    },
    /// Remove a signer binding.
    Remove {
        /// SHA-256 fingerprint of the certificate (as `signer list` shows).
        fingerprint: String,
    },
}

fn role_name(value: i32) -> &'static str {
    match proto::SignerRole::try_from(value) {
        Ok(proto::SignerRole::Organization) => "organization",
        Ok(proto::SignerRole::Head) => "head",
        Ok(proto::SignerRole::AccountOwner) => "account-owner",
        Ok(proto::SignerRole::ChiefAccountant) => "chief-accountant",
        Ok(proto::SignerRole::Officer) => "officer",
        _ => "-",
    }
}

fn print_signer(signer: &proto::Signer) {
    let facts = signer.certificate.clone().unwrap_or_default();
    println!(
        "{}  {:<16}  {}",
        signer.agency,
        role_name(signer.role),
        facts.subject
    );
    println!("    certificate sha256 {}", facts.sha256_fingerprint);
}

/// Runs a signer command.
pub async fn signer(command: SignerCommand, connection: &Connection) -> anyhow::Result<()> {
    let mut client = AdminClient::new(connection.channel().await?);
    match command {
        SignerCommand::Add {
            agency,
            role,
            certificate,
        } => {
            let role = parse_role(&role)?;
            let certificate_pem = String::from_utf8(read(&certificate, "signer certificate")?)
                .context("the signer certificate is not PEM text")?;
            let response = client
                .add_signer(proto::AddSignerRequest {
                    agency,
                    role: role as i32,
                    certificate_pem,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            println!("bound:");
            response.signer.iter().for_each(print_signer);
        }
        SignerCommand::List { agency } => {
            let response = client
                .list_signers(proto::ListSignersRequest { agency })
                .await
                .map_err(status_error)?
                .into_inner();
            if response.signers.is_empty() {
                println!("no signers registered");
            }
            response.signers.iter().for_each(print_signer);
        }
        SignerCommand::Remove { fingerprint } => {
            client
                .remove_signer(proto::RemoveSignerRequest {
                    sha256_fingerprint: fingerprint.clone(),
                })
                .await
                .map_err(status_error)?;
            println!("removed signer {fingerprint}");
        }
    }
    Ok(())
}

/// `lienthong verify`: check a detached signature offline.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The signed file.
    #[arg(long)]
    content: PathBuf,
    /// The detached CMS signature (DER).
    #[arg(long)]
    signature: PathBuf,
    #[command(flatten)]
    trust: OfflineTrust,
    /// Print the reports as JSON.
    #[arg(long)]
    json: bool,
}

/// The trust material of an offline check.
#[derive(Args, Debug)]
pub(crate) struct OfflineTrust {
    /// Trusted certificates (PEM): self-signed ones are anchors, the others
    /// help build chains.
    #[arg(long, required = true, num_args = 1..)]
    trust: Vec<PathBuf>,
    /// CRLs (PEM or DER); without a fresh CRL for each CA the result is TRY_LATER.
    #[arg(long, num_args = 1..)]
    crl: Vec<PathBuf>,
}

impl OfflineTrust {
    /// A verifier over it: the self-signed `--trust` certificates are
    /// anchors, the others intermediates; the `--crl` files.
    pub(crate) fn verifier(&self) -> anyhow::Result<Verifier> {
        offline_verifier(&self.trust, &self.crl)
    }
}

fn offline_verifier(trust: &[PathBuf], crl: &[PathBuf]) -> anyhow::Result<Verifier> {
    let mut anchors = Vec::new();
    let mut intermediates = Vec::new();
    for path in trust {
        let certificates = pki::certificates_from_pem(&[read(path, "trusted certificate")?])
            .with_context(|| format!("reading {}", path.display()))?;
        for certificate in certificates {
            if certificate.is_self_issued() {
                anchors.push(certificate);
            } else {
                intermediates.push(certificate);
            }
        }
    }
    if anchors.is_empty() {
        bail!("--trust names no self-signed root: give the root CA certificate");
    }
    let crls = crl
        .iter()
        .map(|path| {
            pki::crl_from_bytes(&read(path, "CRL")?)
                .with_context(|| format!("reading {}", path.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let trust = TrustStore::build(anchors, intermediates, crls)?;
    Ok(Verifier::new(
        trust,
        CryptoRules::default(),
        std::sync::Arc::new(SystemClock),
    ))
}

/// Prints reports (or their JSON); fails unless all passed.
pub(crate) fn print_reports(reports: &[Report], json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        for (index, report) in reports.iter().enumerate() {
            print_report(index + 1, report);
        }
    }
    if reports.iter().all(Report::passed) {
        Ok(())
    } else {
        bail!(
            "{} of {} signature(s) did not pass",
            reports.iter().filter(|r| !r.passed()).count(),
            reports.len()
        )
    }
}

/// Verifies offline and prints the reports; fails unless all passed.
pub fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let content = read(&args.content, "content")?;
    let signature = read(&args.signature, "signature")?;
    let verifier = args.trust.verifier()?;
    let name = args
        .content
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("content")
        .to_owned();
    let reports = verifier.verify(&content, &signature, &name, &|_| None);
    print_reports(&reports, args.json)
}

fn indication_name(report: &Report) -> String {
    let indication = match report.indication {
        Indication::TotalPassed => "TOTAL_PASSED",
        Indication::Indeterminate => "INDETERMINATE",
        Indication::TotalFailed => "TOTAL_FAILED",
    };
    match report.sub_indication {
        Some(sub) => format!("{indication} / {}", sub.name()),
        None => indication.to_owned(),
    }
}

/// Prints one report as a table a person reads top to bottom.
pub fn print_report(number: usize, report: &Report) {
    println!(
        "signature {number} over {}: {}",
        report.attachment,
        indication_name(report)
    );
    println!("  {}", report.message);
    if let Some(place) = &report.embedded {
        println!(
            "  field     {} (revision {} of {}{})",
            place.field,
            place.revision,
            place.revisions,
            if place.whole_document {
                ", the whole document"
            } else {
                ""
            }
        );
    }
    if let Some(signer) = &report.signer {
        println!("  signer    {}", signer.subject);
        println!("  issuer    {}", signer.issuer);
        println!("  serial    {}", signer.serial_hex);
        println!("  sha256    {}", signer.fingerprint);
        if let Some(time) = signer.signing_time {
            println!("  signed    {}", format_rfc3339(time));
        }
        if let Some((agency, role)) = &signer.registered {
            println!("  agency    {agency} as {}", role.name());
        }
    }
    println!("  checks");
    for check in &report.checks {
        let mark = if check.passed { "ok  " } else { "FAIL" };
        println!("    {mark} {:<18} {}", check.name, check.detail);
    }
}

/// `lienthong key ...`
#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Import a signing key with its certificate for an agency and role; the
    /// gateway stores it encrypted and signs with it for that agency only.
    Import {
        /// The owning agency's org code.
        #[arg(long)]
        agency: String,
        /// organization, head, account-owner, chief-accountant or officer.
        #[arg(long)]
        role: String,
        /// The key's certificate, PEM.
        #[arg(long = "cert")]
        certificate: PathBuf,
        /// The private key, PEM (unencrypted; it is encrypted at rest by the gateway).
        #[arg(long)]
        key: PathBuf,
    },
    /// List held keys (certificate facts only; keys never leave the gateway).
    List,
}

pub(crate) fn parse_role(role: &str) -> anyhow::Result<proto::SignerRole> {
    Ok(match Role::parse(role) {
        Some(Role::Organization) => proto::SignerRole::Organization,
        Some(Role::Head) => proto::SignerRole::Head,
        Some(Role::AccountOwner) => proto::SignerRole::AccountOwner,
        Some(Role::ChiefAccountant) => proto::SignerRole::ChiefAccountant,
        Some(Role::Officer) => proto::SignerRole::Officer,
        None => bail!(
            "--role {role:?}: use organization, head, account-owner, chief-accountant or officer"
        ),
    })
}

/// Runs a key command.
pub async fn key(command: KeyCommand, connection: &Connection) -> anyhow::Result<()> {
    let mut client = AdminClient::new(connection.channel().await?);
    match command {
        KeyCommand::Import {
            agency,
            role,
            certificate,
            key,
        } => {
            let role = parse_role(&role)?;
            let certificate_pem = String::from_utf8(read(&certificate, "certificate")?)
                .context("certificate is not PEM text")?;
            let private_key_pem = String::from_utf8(read(&key, "private key")?)
                .context("private key is not PEM text")?;
            let response = client
                .import_key(proto::ImportKeyRequest {
                    key: Some(proto::KeyRef {
                        agency: agency.clone(),
                        role: role as i32,
                    }),
                    certificate_pem,
                    private_key_pem,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            let facts = response.certificate.unwrap_or_default();
            println!(
                "imported the key of {agency} as {}: {}",
                role_name(role as i32),
                facts.subject
            );
            println!("    certificate sha256 {}", facts.sha256_fingerprint);
        }
        KeyCommand::List => {
            let response = client
                .list_keys(proto::ListKeysRequest {})
                .await
                .map_err(status_error)?
                .into_inner();
            if response.keys.is_empty() {
                println!("no keys held");
            }
            for held in &response.keys {
                let key = held.key.clone().unwrap_or_default();
                let facts = held.certificate.clone().unwrap_or_default();
                println!(
                    "{}  {:<16}  {}",
                    key.agency,
                    role_name(key.role),
                    facts.subject
                );
                println!("    certificate sha256 {}", facts.sha256_fingerprint);
            }
        }
    }
    Ok(())
}

/// `lienthong sign`: a signing station asks the gateway to sign with its key.
#[derive(Args, Debug)]
pub struct SignArgs {
    /// The role of your agency's key to sign with.
    #[arg(long)]
    role: String,
    /// The file to sign.
    #[arg(long = "in")]
    input: PathBuf,
    /// Where to write the detached signature (DER); default: INPUT.p7s.
    #[arg(long)]
    out: Option<PathBuf>,
    /// An existing signature over the same file to add yours to (co-sign).
    #[arg(long)]
    cosign: Option<PathBuf>,
    /// Your agency's org code; read from your certificate's OU when omitted.
    #[arg(long, env = "LIENTHONG_AGENCY")]
    agency: Option<String>,
    #[command(flatten)]
    connection: Connection,
}

/// Signs or co-signs a file through the gateway.
pub async fn sign(args: SignArgs) -> anyhow::Result<()> {
    let role = parse_role(&args.role)?;
    let agency = match args
        .agency
        .clone()
        .or_else(|| args.connection.agency_from_certificate())
    {
        Some(agency) => agency,
        None => bail!("--agency is required: your certificate does not name your org code"),
    };
    let key = proto::KeyRef {
        agency,
        role: role as i32,
    };
    let mut client = proto::signing_client::SigningClient::new(args.connection.channel().await?)
        .max_encoding_message_size(super::CLIENT_MESSAGE_LIMIT)
        .max_decoding_message_size(super::CLIENT_MESSAGE_LIMIT);
    let out = args.out.clone().unwrap_or_else(|| {
        let mut name = args.input.clone().into_os_string();
        name.push(".p7s");
        PathBuf::from(name)
    });
    let signature = match &args.cosign {
        None => {
            // Streamed 1 MiB at a time: files of any size, bounded memory.
            let failed = std::sync::Arc::new(std::sync::Mutex::new(None));
            let stream = file_stream(
                &args.input,
                proto::SignStreamRequest {
                    part: Some(proto::sign_stream_request::Part::Key(key)),
                },
                |chunk| proto::SignStreamRequest {
                    part: Some(proto::sign_stream_request::Part::Chunk(chunk)),
                },
                &failed,
            )?;
            let response = client
                .sign_stream(stream)
                .await
                .map_err(status_error)?
                .into_inner();
            if let Some(error) = failed.lock().ok().and_then(|mut f| f.take()) {
                bail!(
                    "reading {} failed part way ({error}); the signature was discarded",
                    args.input.display()
                );
            }
            let signer = response.signer.unwrap_or_default();
            println!("signed by {} ({})", signer.subject, role_name(signer.role));
            response.cms_der
        }
        Some(existing) => {
            let content = read(&args.input, "file to sign")?;
            let cms_der = read(existing, "existing signature")?;
            let response = client
                .co_sign(proto::CoSignRequest {
                    key: Some(key),
                    content,
                    cms_der,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            for report in &response.existing {
                let signer = report.signer.clone().unwrap_or_default();
                println!("existing signature by {} verified", signer.subject);
            }
            println!("co-signed as {}", role_name(role as i32));
            response.cms_der
        }
    };
    std::fs::write(&out, &signature).with_context(|| format!("writing {}", out.display()))?;
    println!("signature written to {}", out.display());
    Ok(())
}

/// Reads a file as stream messages of 1 MiB chunks. A read error ends the
/// stream and is kept, so that what was made of it is thrown away.
struct ChunkReader<T> {
    file: Option<std::fs::File>,
    failed: std::sync::Arc<std::sync::Mutex<Option<std::io::Error>>>,
    /// Makes the stream message of a chunk.
    wrap: fn(Vec<u8>) -> T,
}

impl<T> Iterator for ChunkReader<T> {
    type Item = T;

    fn next(&mut self) -> Option<Self::Item> {
        use std::io::Read;
        let file = self.file.as_mut()?;
        let mut buffer = Vec::with_capacity(1 << 20);
        match file.take(1 << 20).read_to_end(&mut buffer) {
            Ok(0) => {
                self.file = None;
                None
            }
            Err(error) => {
                self.file = None;
                if let Ok(mut failed) = self.failed.lock() {
                    *failed = Some(error);
                }
                None
            }
            Ok(_) => Some((self.wrap)(buffer)),
        }
    }
}

/// A file as a stream: the options message, then 1 MiB chunks; a read
/// error is kept in `failed`.
pub(crate) fn file_stream<T: Send + 'static>(
    path: &std::path::Path,
    first: T,
    wrap: fn(Vec<u8>) -> T,
    failed: &std::sync::Arc<std::sync::Mutex<Option<std::io::Error>>>,
) -> anyhow::Result<impl tokio_stream::Stream<Item = T> + Send + 'static> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let chunks = ChunkReader {
        file: Some(file),
        failed: failed.clone(),
        wrap,
    };
    Ok(tokio_stream::StreamExt::chain(
        tokio_stream::once(first),
        tokio_stream::iter(chunks),
    ))
}

/// One message of a signing answer: the summary, or a piece of the
/// signed document.
pub(crate) enum Answered<S> {
    Summary(S),
    Chunk(Vec<u8>),
}

/// Saves a signing answer (a summary, then the signed document in chunks)
/// to `out` through a `.partial` file beside it, renamed into place only
/// once every byte the summary announced arrived and the input was read
/// whole (`failed` keeps a read error of `input`). Answers the summary and
/// the bytes written; on failure nothing is left behind.
pub(crate) async fn save_signed<M, S>(
    mut answer: tonic::Streaming<M>,
    out: &std::path::Path,
    input: &std::path::Path,
    failed: &std::sync::Arc<std::sync::Mutex<Option<std::io::Error>>>,
    part: impl Fn(M) -> Option<Answered<S>>,
    announced: impl Fn(&S) -> u64,
) -> anyhow::Result<(S, u64)> {
    use std::io::Write;
    let mut name = out.as_os_str().to_owned();
    name.push(".partial");
    let partial = std::path::PathBuf::from(name);
    let mut file = std::fs::File::create(&partial)
        .with_context(|| format!("creating {}", partial.display()))?;
    let mut summary = None;
    let mut written = 0u64;
    let outcome: anyhow::Result<()> = async {
        while let Some(message) = answer.message().await.map_err(status_error)? {
            match part(message) {
                Some(Answered::Summary(s)) => summary = Some(s),
                Some(Answered::Chunk(chunk)) => {
                    file.write_all(&chunk)?;
                    written += chunk.len() as u64;
                }
                None => {}
            }
        }
        if let Some(error) = failed.lock().ok().and_then(|mut f| f.take()) {
            bail!("reading {} failed part way: {error}", input.display());
        }
        let Some(summary) = &summary else {
            bail!("the gateway answered without saying what it signed");
        };
        if written != announced(summary) {
            bail!(
                "the signed document was cut short: {written} of {} bytes arrived",
                announced(summary)
            );
        }
        file.sync_all()?;
        Ok(())
    }
    .await;
    if let Err(error) = outcome {
        let _ = std::fs::remove_file(&partial);
        return Err(error);
    }
    std::fs::rename(&partial, out).with_context(|| format!("writing {}", out.display()))?;
    let summary = summary.context("the gateway answered without saying what it signed")?;
    Ok((summary, written))
}
