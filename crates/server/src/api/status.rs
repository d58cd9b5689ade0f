//! The one mapping from domain errors to gRPC status codes. Exhaustive, no
//! catch-all: a new error variant must be given its code here.

use tonic::Status;

/// Every way a call can fail, as the handlers see it. Each handler returns
/// it, and [`From<ApiError> for Status`](#impl-From<ApiError>-for-Status)
/// is the one place a failure becomes a gRPC status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A use case refused or failed.
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    /// No usable client certificate: none, unregistered or revoked.
    #[error("{0}")]
    Unauthenticated(String),
    /// A known caller that may not make this call.
    #[error("{0}")]
    NotPermitted(String),
    /// The transport ended the call (a broken stream, a frame too large).
    #[error(transparent)]
    Transport(#[from] Status),
}

impl ApiError {
    /// A field of the request that breaks a rule of the protocol (an
    /// envelope error, as the core would say of its own fields).
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        EnvelopeError::invalid(field, reason).into()
    }

    /// A required field of the request that is absent.
    pub fn missing(field: &str) -> Self {
        Self::invalid(field, "is required")
    }

    /// A field or stream larger than the gateway accepts.
    pub fn too_large(field: &str, size: u64, limit: u64) -> Self {
        EnvelopeError::TooLarge {
            field: field.to_owned(),
            size,
            limit,
        }
        .into()
    }
}

impl From<QueueError> for ApiError {
    fn from(error: QueueError) -> Self {
        Self::Gateway(error.into())
    }
}

impl From<RegistryError> for ApiError {
    fn from(error: RegistryError) -> Self {
        Self::Gateway(error.into())
    }
}

impl From<EnvelopeError> for ApiError {
    fn from(error: EnvelopeError) -> Self {
        Self::Gateway(error.into())
    }
}

impl From<ApiError> for Status {
    fn from(error: ApiError) -> Self {
        match error {
            ApiError::Gateway(error) => gateway(error),
            ApiError::Unauthenticated(message) => Status::unauthenticated(message),
            ApiError::NotPermitted(message) => Status::permission_denied(message),
            ApiError::Transport(status) => status,
        }
    }
}

use crate::{
    envelope::EnvelopeError,
    gateway::GatewayError,
    messages::MessageError,
    pki::{PkiError, Report},
    queue::QueueError,
    registry::{Refusal, RegistryError},
    routing::RoutingError,
    store::StoreError,
};

fn gateway(error: GatewayError) -> Status {
    match error {
        GatewayError::Envelope(error) => envelope(error),
        GatewayError::NotSender { .. } => Status::permission_denied(error.to_string()),
        GatewayError::Routing(error) => routing(error),
        GatewayError::Queue(error) => queue(error),
        GatewayError::Message(error) => message(error),
        GatewayError::Registry(error) => registry(error),
        GatewayError::Store(error) => store(error),
        GatewayError::Pki(error) => pki(error),
        GatewayError::TrustFile { .. } => {
            tracing::error!(error = %error, "trust material unreadable");
            Status::unavailable("the gateway's trust material is unreadable; see its log")
        }
        GatewayError::Refused { refusal, reports } => refused(&refusal, &reports),
        GatewayError::NotKeyOwner { .. } | GatewayError::NotInvolved { .. } => {
            Status::permission_denied(error.to_string())
        }
        GatewayError::NoSuchMessage { .. } => Status::not_found(error.to_string()),
        GatewayError::NoSuchKey { .. } | GatewayError::UnknownPeer(_) => {
            Status::not_found(error.to_string())
        }
        GatewayError::ShuttingDown => Status::unavailable(error.to_string()),
        GatewayError::StagingFull { .. } => Status::resource_exhausted(error.to_string()),
        // Refusals for good: the forwarding gateway dead-letters the document.
        GatewayError::Hop(_) | GatewayError::NotFederated => {
            Status::failed_precondition(error.to_string())
        }
        GatewayError::StreamIdle(_) => Status::deadline_exceeded(error.to_string()),
        GatewayError::StreamBroken(_) => Status::cancelled(error.to_string()),
        GatewayError::Pdf(error) => pdf(error),
        GatewayError::Edxml(error) => edxml(error),
        GatewayError::Seed { .. } => {
            tracing::error!(error = %error, "configured registration refused");
            Status::internal("the gateway's configured registrations failed; see its log")
        }
        GatewayError::Internal(_) => {
            tracing::error!(error = %error, "internal fault");
            Status::internal("an internal fault in the gateway; see its log")
        }
    }
}

fn pdf(error: lienthong_pdf::PdfError) -> Status {
    use lienthong_pdf::PdfError;
    match error {
        PdfError::Unreadable(_)
        | PdfError::TooManyRevisions(_)
        | PdfError::TooManyFields(_)
        | PdfError::Image(_) => Status::invalid_argument(error.to_string()),
        PdfError::Refused(_) => Status::failed_precondition(error.to_string()),
        PdfError::Io(_) | PdfError::Signing(_) => {
            tracing::error!(error = %error, "internal fault with a PDF");
            Status::internal("an internal fault in the gateway; see its log")
        }
    }
}

fn edxml(error: lienthong_edxml::EdxmlError) -> Status {
    use lienthong_edxml::EdxmlError;
    match error {
        // Oversize content is a bad package, named like the others.
        EdxmlError::Invalid { .. } | EdxmlError::TooLarge { .. } => {
            Status::invalid_argument(format!("edXML: {error}"))
        }
        EdxmlError::Io(_) | EdxmlError::Internal(_) | EdxmlError::Signing(_) => {
            tracing::error!(error = %error, "internal fault with an edXML package");
            Status::internal("an internal fault in the gateway; see its log")
        }
    }
}

fn envelope(error: EnvelopeError) -> Status {
    match error {
        EnvelopeError::Invalid { .. } => Status::invalid_argument(error.to_string()),
        EnvelopeError::TooLarge { .. } => Status::resource_exhausted(error.to_string()),
    }
}

fn routing(error: RoutingError) -> Status {
    match error {
        RoutingError::Unknown { .. }
        | RoutingError::Disabled { .. }
        | RoutingError::UnknownGroup { .. }
        | RoutingError::Empty { .. } => Status::invalid_argument(error.to_string()),
    }
}

fn queue(error: QueueError) -> Status {
    match error {
        QueueError::MalformedDeliveryId(_) => {
            Status::invalid_argument(format!("delivery_id: {error}"))
        }
        QueueError::MalformedDeadLetterId(_) => {
            Status::invalid_argument(format!("dead_letter_id: {error}"))
        }
        QueueError::PurgeNotConfirmed(_) => Status::invalid_argument(format!("confirm: {error}")),
        QueueError::UnknownDelivery(_) | QueueError::UnknownDeadLetter(_) => {
            Status::not_found(error.to_string())
        }
        QueueError::ImpossibleStatus(_) => {
            Status::failed_precondition(format!("status.code: {error}"))
        }
        QueueError::LeaseLost(_) | QueueError::NotLeased(_) => {
            Status::failed_precondition(error.to_string())
        }
        QueueError::Message(error) => message(error),
        QueueError::Store(error) => store(error),
    }
}

fn message(error: MessageError) -> Status {
    match error {
        MessageError::AlreadyExists { .. } => Status::already_exists(error.to_string()),
        MessageError::ContentReleased(_) => Status::unavailable(error.to_string()),
        MessageError::Store(error) => store(error),
    }
}

fn registry(error: RegistryError) -> Status {
    match error {
        RegistryError::InvalidCode(error) => envelope(error),
        RegistryError::InvalidName(_)
        | RegistryError::UnknownParent(_)
        | RegistryError::NoCertificate
        | RegistryError::BadCertificate { .. }
        | RegistryError::Unusable { .. } => Status::invalid_argument(error.to_string()),
        RegistryError::LastCertificate { .. } => Status::failed_precondition(error.to_string()),
        RegistryError::NotBound { .. } => Status::not_found(error.to_string()),
        RegistryError::AlreadyRegistered(_) | RegistryError::CertificateInUse { .. } => {
            Status::already_exists(error.to_string())
        }
        RegistryError::UnknownGroup(_) => Status::not_found(error.to_string()),
        RegistryError::InvalidGroup(_) => Status::invalid_argument(error.to_string()),
        RegistryError::UnknownAgency(_) | RegistryError::UnknownSigner(_) => {
            Status::not_found(error.to_string())
        }
        RegistryError::SignerExists { .. } => Status::already_exists(error.to_string()),
        RegistryError::MalformedFingerprint(_) | RegistryError::InvalidPolicy(_) => {
            Status::invalid_argument(error.to_string())
        }
        RegistryError::Store(error) => store(error),
    }
}

fn pki(error: PkiError) -> Status {
    match error {
        PkiError::NoCertificate
        | PkiError::BadPem(_)
        | PkiError::BadCertificate(_)
        | PkiError::BadCrl(_)
        | PkiError::UntrustedCrl(_)
        | PkiError::BadKey(_) => Status::invalid_argument(error.to_string()),
        PkiError::Locked(_) | PkiError::OlderCrl(_) => {
            Status::failed_precondition(error.to_string())
        }
        PkiError::Signing(_) => {
            tracing::error!(error = %error, "signing failed");
            Status::internal("signing failed in the gateway; see its log")
        }
    }
}

/// FAILED_PRECONDITION with rich error details (google.rpc.Status in
/// `grpc-status-details-bin`): a standard PreconditionFailure naming each
/// unmet requirement, and the verification reports as a
/// `lienthong.v1.VerifyResponse`.
fn refused(refusal: &Refusal, reports: &[Report]) -> Status {
    use prost::Message;
    use tonic_types::pb;
    let message = format!(
        "document refused under policy {}: {}",
        refusal.document_type,
        refusal.reasons.join("; ")
    );
    let violations = pb::PreconditionFailure {
        violations: refusal
            .reasons
            .iter()
            .map(|reason| pb::precondition_failure::Violation {
                r#type: "SIGNATURE_POLICY".to_owned(),
                subject: refusal.document_type.clone(),
                description: reason.clone(),
            })
            .collect(),
    };
    let reports = crate::proto::VerifyResponse {
        reports: reports.iter().map(super::convert::report).collect(),
    };
    let details = pb::Status {
        code: tonic::Code::FailedPrecondition as i32,
        message: message.clone(),
        details: vec![
            prost_types::Any {
                type_url: "type.googleapis.com/google.rpc.PreconditionFailure".to_owned(),
                value: violations.encode_to_vec(),
            },
            prost_types::Any {
                type_url: "type.googleapis.com/lienthong.v1.VerifyResponse".to_owned(),
                value: reports.encode_to_vec(),
            },
        ],
    };
    Status::with_details(
        tonic::Code::FailedPrecondition,
        message,
        details.encode_to_vec().into(),
    )
}

/// Storage faults are the gateway's, not the caller's: logged in full,
/// answered without paths.
fn store(error: StoreError) -> Status {
    match &error {
        StoreError::Failed(_) | StoreError::Closed => Status::unavailable(error.to_string()),
        // Nothing was written: the caller tries again, here once the
        // database is back, or at the gateway that took over.
        StoreError::Unavailable(_) | StoreError::NotLeader(_) => {
            tracing::warn!(error = %error, "call refused");
            Status::unavailable(format!("{error}; try again"))
        }
        StoreError::JobPanicked(_) => {
            tracing::error!(error = %error, "internal fault");
            Status::internal("an internal fault in the gateway; see its log")
        }
        // The document is refused, the gateway goes on: acknowledgements
        // release content and sends are accepted again.
        StoreError::NoRoom { .. } => {
            Status::resource_exhausted(format!("{error}; try again later"))
        }
        StoreError::DiskFull { .. } => {
            tracing::error!(error = %error, "storage failure");
            Status::resource_exhausted("the gateway's disk is full; try again later")
        }
        StoreError::Damaged(_) => {
            tracing::error!(error = %error, "storage failure");
            Status::unavailable("the gateway's store is damaged; try again later")
        }
        StoreError::Engine(_)
        | StoreError::Io { .. }
        | StoreError::Corrupt { .. }
        | StoreError::ValueTooLarge { .. } => {
            tracing::error!(error = %error, "storage failure");
            Status::unavailable("storage failure in the gateway; try again later")
        }
    }
}
