//! Who is calling: the SHA-256 of the verified client certificate, mapped to
//! an agency through the registry or to an administrator through the config.

use std::{collections::HashSet, sync::Arc};

use tonic::Request;

use super::ApiError;
use crate::{gateway::Gateway, pki::Fingerprint, registry::Agency};

/// Turns a request's client certificate into an identity.
#[derive(Clone)]
pub struct Authenticator {
    gateway: Arc<Gateway>,
    admins: Arc<HashSet<Fingerprint>>,
}

impl Authenticator {
    /// Admins are the holders of the certificates with these fingerprints.
    pub fn new(gateway: Arc<Gateway>, admins: HashSet<Fingerprint>) -> Self {
        Self {
            gateway,
            admins: Arc::new(admins),
        }
    }

    /// The calling agency. No certificate or an unregistered one is
    /// UNAUTHENTICATED; a disabled agency is PERMISSION_DENIED.
    pub fn agency<T>(&self, request: &Request<T>) -> Result<Agency, ApiError> {
        let fingerprint = self.peer_fingerprint(request)?;
        let agency = self
            .gateway
            .agency_by_certificate(&fingerprint)
            .ok_or_else(|| {
                ApiError::Unauthenticated(format!(
                    "client certificate {fingerprint} is not registered to any agency"
                ))
            })?;
        if agency.disabled {
            return Err(ApiError::NotPermitted(format!(
                "agency {} is disabled",
                agency.code
            )));
        }
        Ok(agency)
    }

    /// Passes for a registered, enabled agency or an administrator.
    pub fn agency_or_admin<T>(&self, request: &Request<T>) -> Result<(), ApiError> {
        let fingerprint = self.peer_fingerprint(request)?;
        if self.admins.contains(&fingerprint) {
            return Ok(());
        }
        self.agency(request).map(|_| ())
    }

    /// Passes only for an administrator's certificate.
    pub fn admin<T>(&self, request: &Request<T>) -> Result<(), ApiError> {
        let fingerprint = self.peer_fingerprint(request)?;
        if self.admins.contains(&fingerprint) {
            return Ok(());
        }
        match self.gateway.agency_by_certificate(&fingerprint) {
            Some(agency) => Err(ApiError::NotPermitted(format!(
                "agency {} is not an administrator; Admin calls need an admin certificate",
                agency.code
            ))),
            None => Err(ApiError::Unauthenticated(format!(
                "client certificate {fingerprint} is neither an admin nor a registered agency"
            ))),
        }
    }
}

impl Authenticator {
    /// The calling peer gateway: the holder of a certificate whose SHA-256
    /// `[federation.peers]` pins. Anyone else is UNAUTHENTICATED, and the
    /// refusal is logged with the certificate it presented.
    pub fn peer<T>(&self, request: &Request<T>) -> Result<crate::federation::GatewayId, ApiError> {
        let fingerprint = self.peer_fingerprint(request)?;
        match self.gateway.peer_by_certificate(&fingerprint) {
            Some(peer) => Ok(peer.id.clone()),
            None => {
                let reason = match self.gateway.federation() {
                    Some(_) => format!(
                        "certificate {fingerprint} is not the pinned certificate of any peer in [federation.peers]"
                    ),
                    None => "this gateway has no [federation] peers".to_owned(),
                };
                tracing::warn!(certificate = %fingerprint, %reason, "Forward refused");
                Err(ApiError::Unauthenticated(reason))
            }
        }
    }
}

impl Authenticator {
    /// The fingerprint of the caller's certificate, refused when a CRL in
    /// force lists it (the TLS layer checks the chain, not revocation).
    fn peer_fingerprint<T>(&self, request: &Request<T>) -> Result<Fingerprint, ApiError> {
        let certificates = request.peer_certs().ok_or_else(|| {
            ApiError::Unauthenticated("a client certificate is required (mTLS)".to_owned())
        })?;
        let leaf = certificates.first().ok_or_else(|| {
            ApiError::Unauthenticated("a client certificate is required (mTLS)".to_owned())
        })?;
        let fingerprint = Fingerprint::of_der(leaf.as_ref());
        let presented: Vec<&[u8]> = certificates.iter().map(|c| c.as_ref()).collect();
        if let Some(reason) = self.gateway.client_revoked(&presented) {
            tracing::warn!(certificate = %fingerprint, %reason, "revoked client certificate refused");
            return Err(ApiError::Unauthenticated(format!(
                "client certificate {fingerprint} is revoked: {reason}"
            )));
        }
        Ok(fingerprint)
    }
}
