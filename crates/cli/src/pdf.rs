//! `lienthong pdf verify` (offline) and `lienthong pdf sign` (with a key
//! the gateway holds for your agency): signatures inside PDFs.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use lienthong_proto as proto;

use super::{
    Connection,
    pki::{Answered, OfflineTrust, file_stream, parse_role, print_reports, save_signed},
    read, status_error,
};

/// `lienthong pdf ...`
#[derive(Subcommand, Debug)]
pub enum PdfCommand {
    /// Verify every signature embedded in a PDF, offline, and print the
    /// reports (field, revision, checks, what changed after signing).
    Verify(PdfVerifyArgs),
    /// Sign a PDF inside it with your agency's key held by the gateway: a
    /// new signature field in an incremental update (earlier signatures
    /// stay valid), visible when --image is given.
    Sign(Box<PdfSignArgs>),
}

/// `lienthong pdf verify`
#[derive(Args, Debug)]
pub struct PdfVerifyArgs {
    /// The PDF.
    file: PathBuf,
    #[command(flatten)]
    trust: OfflineTrust,
    /// Print the reports as JSON.
    #[arg(long)]
    json: bool,
}

/// `lienthong pdf sign`
#[derive(Args, Debug)]
pub struct PdfSignArgs {
    /// The role of your agency's key to sign with (head, organization...).
    #[arg(long)]
    role: String,
    /// The PDF to sign.
    #[arg(long = "in")]
    input: PathBuf,
    /// Where to write the signed PDF.
    #[arg(long)]
    out: PathBuf,
    /// The new signature field's name (default Signature1, Signature2...).
    #[arg(long)]
    field: Option<String>,
    /// A PNG drawn as the visible signature (the blue signature or the red
    /// seal); invisible without it.
    #[arg(long, requires = "rect")]
    image: Option<PathBuf>,
    /// The page the image goes on, from 1.
    #[arg(long, default_value_t = 1)]
    page: u32,
    /// Where on the page: x1,y1,x2,y2 in points from the lower left corner.
    #[arg(long, requires = "image")]
    rect: Option<String>,
    /// Why it is signed (shown by PDF readers).
    #[arg(long)]
    reason: Option<String>,
    /// Your agency's org code; read from your certificate's OU when omitted.
    #[arg(long, env = "LIENTHONG_AGENCY")]
    agency: Option<String>,
    #[command(flatten)]
    connection: Connection,
}

/// Runs a pdf command.
pub async fn pdf(command: PdfCommand) -> anyhow::Result<()> {
    match command {
        PdfCommand::Verify(args) => verify(args),
        PdfCommand::Sign(args) => sign(*args).await,
    }
}

fn verify(args: PdfVerifyArgs) -> anyhow::Result<()> {
    let verifier = args.trust.verifier()?;
    let pdf = lienthong_pdf::MappedPdf::open(&args.file)?;
    let name = args
        .file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("document.pdf")
        .to_owned();
    let reports = lienthong_pdf::verify(
        pdf.bytes(),
        &verifier,
        &name,
        &|_| None,
        &lienthong_pdf::Limits::default(),
    )
    .with_context(|| format!("verifying {}", args.file.display()))?;
    if reports.is_empty() {
        bail!("{} carries no embedded signature", args.file.display());
    }
    print_reports(&reports, args.json)
}

fn parse_rect(text: &str) -> anyhow::Result<Vec<f32>> {
    let numbers = text
        .split(',')
        .map(|n| n.trim().parse::<f32>())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("--rect {text:?}: numbers x1,y1,x2,y2"))?;
    if numbers.len() != 4 {
        bail!("--rect {text:?}: give four numbers x1,y1,x2,y2");
    }
    Ok(numbers)
}

async fn sign(args: PdfSignArgs) -> anyhow::Result<()> {
    use proto::{sign_pdf_request, sign_pdf_response::Part};
    let role = parse_role(&args.role)?;
    let Some(agency) = args
        .agency
        .clone()
        .or_else(|| args.connection.agency_from_certificate())
    else {
        bail!("--agency is required: your certificate does not name your org code");
    };
    let appearance = match (&args.image, &args.rect) {
        (Some(image), Some(rect)) => Some(proto::PdfAppearance {
            png: read(image, "signature image")?,
            page: args.page,
            rect: parse_rect(rect)?,
        }),
        _ => None,
    };
    let size = std::fs::metadata(&args.input)
        .with_context(|| format!("reading {}", args.input.display()))?
        .len();
    let options = proto::SignPdfRequest {
        part: Some(sign_pdf_request::Part::Options(proto::SignPdfOptions {
            key: Some(proto::KeyRef {
                agency,
                role: role as i32,
            }),
            size,
            field: args.field.clone().unwrap_or_default(),
            reason: args.reason.clone().unwrap_or_default(),
            appearance,
        })),
    };
    let failed = std::sync::Arc::new(std::sync::Mutex::new(None));
    let stream = file_stream(
        &args.input,
        options,
        |chunk| proto::SignPdfRequest {
            part: Some(sign_pdf_request::Part::Chunk(chunk)),
        },
        &failed,
    )?;
    let mut client = proto::signing_client::SigningClient::new(args.connection.channel().await?)
        .max_encoding_message_size(super::CLIENT_MESSAGE_LIMIT)
        .max_decoding_message_size(super::CLIENT_MESSAGE_LIMIT);
    let answer = client
        .sign_pdf(stream)
        .await
        .map_err(status_error)?
        .into_inner();
    let (signed, written) = save_signed(
        answer,
        &args.out,
        &args.input,
        &failed,
        |message: proto::SignPdfResponse| match message.part? {
            Part::Signed(signed) => Some(Answered::Summary(signed)),
            Part::Chunk(chunk) => Some(Answered::Chunk(chunk)),
        },
        |signed| signed.size,
    )
    .await?;
    let signer = signed.signer.unwrap_or_default();
    println!(
        "signed field {:?} (revision {}) as {} by {}",
        signed.field, signed.revision, args.role, signer.subject
    );
    println!(
        "signed PDF written to {} ({written} bytes)",
        args.out.display()
    );
    Ok(())
}
