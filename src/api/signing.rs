//! `lienthong.v1.Signing`: authenticated, not implemented yet.

use tonic::{Request, Response, Status};

use super::Authenticator;
use crate::proto::{self, signing_server::Signing};

/// The Signing service.
pub struct SigningService {
    auth: Authenticator,
}

impl SigningService {
    /// A service checking callers with `auth`.
    pub fn new(auth: Authenticator) -> Self {
        Self { auth }
    }
}

#[tonic::async_trait]
impl Signing for SigningService {
    async fn verify(
        &self,
        request: Request<proto::VerifyRequest>,
    ) -> Result<Response<proto::VerifyResponse>, Status> {
        self.auth.agency(&request)?;
        Err(Status::unimplemented("Verify is not implemented yet"))
    }

    async fn sign(
        &self,
        request: Request<proto::SignRequest>,
    ) -> Result<Response<proto::SignResponse>, Status> {
        self.auth.agency(&request)?;
        Err(Status::unimplemented("Sign is not implemented yet"))
    }

    async fn co_sign(
        &self,
        request: Request<proto::CoSignRequest>,
    ) -> Result<Response<proto::CoSignResponse>, Status> {
        self.auth.agency(&request)?;
        Err(Status::unimplemented("CoSign is not implemented yet"))
    }
}
